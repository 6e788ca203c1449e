package io.dtrain.launcher;

import io.dtrain.checkpoint.CheckpointException;
import io.dtrain.common.UserFacingException;
import io.dtrain.config.ConfigException;
import io.dtrain.data.DataException;
import io.dtrain.report.ReportException;
import io.dtrain.parallel.rendezvous.RendezvousAuthException;
import io.dtrain.parallel.rendezvous.RendezvousTimeoutException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Errors are classified by type: a user-facing one anywhere in the cause chain is one line and exit 2; the rest are bugs. */
class ErrorHandlerTest {

    @CommandLine.Command(name = "failing")
    static final class Failing implements Callable<Integer> {
        final Exception toThrow;

        Failing(Exception toThrow) {
            this.toThrow = toThrow;
        }

        @Override
        public Integer call() throws Exception {
            throw toThrow;
        }
    }

    private record Outcome(int exitCode, String err) {
    }

    private static Outcome run(Exception thrown) {
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new Failing(thrown));
        cl.setExecutionExceptionHandler(new ErrorHandler());
        cl.setErr(new PrintWriter(err, true));
        return new Outcome(cl.execute(), err.toString());
    }

    @Test
    void aUserFacingCauseDeepInTheChainIsOneLineAndExitCode2() {
        ConfigException config = new ConfigException("run.yaml", 7, "model.n_head", "expected an integer, got 'four'");
        Exception wrapped = new ExecutionException(new IllegalStateException("step 3 failed", config));
        Outcome o = run(wrapped);
        assertEquals(2, o.exitCode(), o.err());
        assertEquals("dtrain failing: error: run.yaml:7: model.n_head: expected an integer, got 'four'", o.err().strip());
    }

    @Test
    void theOutermostUserFacingMessageIsShown() {
        Outcome o = run(new UserError("--world must be >= 1", new DataException("inner")));
        assertEquals(2, o.exitCode(), o.err());
        assertEquals("dtrain failing: error: --world must be >= 1", o.err().strip());
    }

    @Test
    void anythingElseIsABugWithItsStackTraceAndExitCode1() {
        Outcome o = run(new IllegalStateException("buffer of 12 elements where 16 were expected"));
        assertEquals(1, o.exitCode(), o.err());
        assertTrue(o.err().startsWith("java.lang.IllegalStateException: buffer of 12 elements where 16 were expected"), o.err());
        assertTrue(o.err().contains("\tat " + ErrorHandlerTest.class.getName() + ".anythingElseIsABug"), "stack trace kept: " + o.err());
        assertTrue(o.err().strip().endsWith("is a bug in dtrain, not a problem with your input; please report it with"
                + " the stack trace above"), o.err());
    }

    @Test
    void everyUserFixableErrorTypeIsUserFacing() {
        for (Class<?> type : List.of(ConfigException.class, CheckpointException.class, DataException.class,
                ReportException.class, UserError.class, RendezvousAuthException.class, RendezvousTimeoutException.class)) {
            assertTrue(UserFacingException.class.isAssignableFrom(type), type + " is not a UserFacingException");
        }
    }
}
