package io.dtrain.launcher;

import io.dtrain.checkpoint.CheckpointException;
import io.dtrain.common.UserFacingException;
import io.dtrain.config.ConfigException;
import io.dtrain.data.DataException;
import io.dtrain.report.ReportException;
import io.dtrain.parallel.rendezvous.RendezvousAuthException;
import io.dtrain.parallel.rendezvous.RendezvousTimeoutException;
import io.dtrain.parallel.CollectiveException;
import io.dtrain.train.TrainingException;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.io.TempDir;
import java.io.StringWriter;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import org.junit.jupiter.api.BeforeEach;
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

    @BeforeEach
    void noRunYet() {
        RunLog.reset();   // commands run earlier in this JVM may have set one
    }

    private static Outcome run(Exception thrown) {
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new Failing(thrown));
        cl.setExecutionExceptionHandler(new ErrorHandler());
        cl.setErr(new PrintWriter(err, true));
        return new Outcome(cl.execute(), err.toString());
    }

    @Test
    void aPlainUserFacingErrorIsOneLineAndExitCode2() {
        Outcome o = run(new ConfigException("run.yaml", 7, "model.n_head", "expected an integer, got 'four'"));
        assertEquals(2, o.exitCode(), o.err());
        assertEquals("dtrain failing: error: run.yaml:7: model.n_head: expected an integer, got 'four'", o.err().strip());
    }

    /** Deep in a chain, the user-facing message is the line; the whole trace is kept in a log file the line names. */
    @Test
    void aUserFacingCauseDeepInTheChainIsOneLineWithItsTraceInALogFile() throws IOException {
        ConfigException config = new ConfigException("run.yaml", 7, "model.n_head", "expected an integer, got 'four'");
        Exception wrapped = new ExecutionException(new IllegalStateException("step 3 failed", config));
        Outcome o = run(wrapped);
        assertEquals(2, o.exitCode(), o.err());
        assertEquals(1, o.err().strip().lines().count(), o.err());
        Matcher m = Pattern.compile("dtrain failing: error: run\\.yaml:7: model\\.n_head: expected an integer, got 'four'"
                + " \\(stack trace: (.+)\\)").matcher(o.err().strip());
        assertTrue(m.matches(), o.err());
        String log = Files.readString(Path.of(m.group(1)));
        assertTrue(log.contains("java.util.concurrent.ExecutionException") && log.contains("step 3 failed")
                && log.contains("\tat " + ErrorHandlerTest.class.getName()), log);
        Files.delete(Path.of(m.group(1)));
    }

    /** Once a command has a run directory, every failure's trace is appended to the run's log there. */
    @Test
    void aRunKeepsItsFailuresInItsOwnLog(@TempDir Path tmp) throws IOException {
        RunLog.use(tmp.resolve("logs"));
        try {
            Outcome o = run(new UserError("--world must be >= 1"));
            assertEquals("dtrain failing: error: --world must be >= 1 (stack trace: " + tmp.resolve("logs/failing-rank0.log")
                    + ")", o.err().strip());
            Outcome bug = run(new IllegalStateException("buffer of 12 elements"));
            assertTrue(bug.err().strip().endsWith("(also in " + tmp.resolve("logs/failing-rank0.log") + ")"), bug.err());
            String log = Files.readString(tmp.resolve("logs/failing-rank0.log"));
            assertTrue(log.contains("--world must be >= 1") && log.contains("buffer of 12 elements"), log);
        } finally {
            RunLog.reset();
        }
    }

    @Test
    void theOutermostUserFacingMessageIsShown() {
        Outcome o = run(new UserError("--world must be >= 1", new DataException("inner")));
        assertEquals(2, o.exitCode(), o.err());
        assertTrue(o.err().strip().startsWith("dtrain failing: error: --world must be >= 1 (stack trace: "), o.err());
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
                ReportException.class, UserError.class, RendezvousAuthException.class, RendezvousTimeoutException.class,
                CollectiveException.class, TrainingException.class)) {
            assertTrue(UserFacingException.class.isAssignableFrom(type), type + " is not a UserFacingException");
        }
    }

    @CommandLine.Command(name = "erroring")
    static final class Erroring implements Callable<Integer> {
        @Override
        public Integer call() {
            throw new OutOfMemoryError("Java heap space (thrown by the test)");
        }
    }

    @Test
    void anErrorStillEndsTheProcessWithExitCodeOne() {
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new Erroring());
        cl.setExecutionExceptionHandler(new ErrorHandler());
        cl.setErr(new PrintWriter(err, true));
        assertEquals(1, Main.execute(cl));
        assertTrue(err.toString().contains("OutOfMemoryError: Java heap space (thrown by the test)"), err.toString());
        assertTrue(err.toString().contains("dtrain: internal error (OutOfMemoryError)"), err.toString());
    }
}
