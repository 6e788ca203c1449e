package io.dtrain.launcher;

import io.dtrain.common.UserFacingException;
import java.io.PrintWriter;
import picocli.CommandLine;

/**
 * What a failed command shows. A {@link UserFacingException} anywhere in the cause chain (every module's errors that
 * the user fixes extend it: a bad config, bad input data, a missing checkpoint, a bad invocation, a refused or absent
 * rendezvous) is one line on stderr and exit code 2. Anything else is a bug in dtrain: its stack trace, a line
 * saying so, exit code 1.
 */
final class ErrorHandler implements CommandLine.IExecutionExceptionHandler {
    static final int EXIT_USER_ERROR = 2;
    static final int EXIT_BUG = 1;

    @Override
    public int handleExecutionException(Exception ex, CommandLine cl, CommandLine.ParseResult parseResult) {
        PrintWriter err = cl.getErr();
        UserFacingException userFacing = userFacingCause(ex);
        if (userFacing != null) {
            err.println("dtrain " + cl.getCommandName() + ": error: " + userFacing.getMessage());
            err.flush();
            return EXIT_USER_ERROR;
        }
        ex.printStackTrace(err);
        err.println("dtrain " + cl.getCommandName() + ": internal error: " + ex + " is a bug in dtrain, not a problem"
                + " with your input; please report it with the stack trace above");
        err.flush();
        return EXIT_BUG;
    }

    /** The outermost {@link UserFacingException} in {@code ex}'s cause chain, or null. */
    static UserFacingException userFacingCause(Throwable ex) {
        int depth = 0;
        for (Throwable t = ex; t != null && depth < 100; t = t.getCause(), depth++) {
            if (t instanceof UserFacingException userFacing) {
                return userFacing;
            }
        }
        return null;
    }
}
