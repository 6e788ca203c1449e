package io.dtrain.launcher;

import io.dtrain.common.UserFacingException;
import java.io.PrintWriter;
import java.nio.file.Path;
import picocli.CommandLine;

/**
 * What a failed command shows. A {@link UserFacingException} anywhere in the cause chain (every module's errors that
 * the user fixes extend it: a bad config, bad input data, a missing checkpoint, a full disk, a run that does not fit
 * in memory, a dead or stalled peer, a bad invocation) is one line on stderr, {@code dtrain CMD: error: MESSAGE},
 * and exit code 2; its stack trace goes to the run's log ({@link RunLog}), whose path ends the line. Anything else
 * is a bug in dtrain: its stack trace, a line saying so, exit code 1.
 */
final class ErrorHandler implements CommandLine.IExecutionExceptionHandler {
    static final int EXIT_USER_ERROR = 2;
    static final int EXIT_BUG = 1;
    /** What starts the one line of a user-facing failure (after "dtrain CMD"); the launcher finds its workers' by it. */
    static final String ERROR_MARK = ": error: ";

    @Override
    public int handleExecutionException(Exception ex, CommandLine cl, CommandLine.ParseResult parseResult) {
        PrintWriter err = cl.getErr();
        String command = cl.getCommandName();
        UserFacingException userFacing = userFacingCause(ex);
        if (userFacing != null) {
            String line = "dtrain " + command + ERROR_MARK + userFacing.getMessage();
            // A failure that wraps a lower-level error keeps its trace even outside a run; a plain one (a typo in a
            // config) says everything in its line.
            boolean wrapsAnError = ex != userFacing || userFacing.getCause() != null;
            Path log = RunLog.write(command, line, ex, wrapsAnError);
            err.println(log == null ? line : line + " (stack trace: " + log + ")");
            err.flush();
            return EXIT_USER_ERROR;
        }
        ex.printStackTrace(err);
        String line = "dtrain " + command + ": internal error: " + ex + " is a bug in dtrain, not a problem with your"
                + " input; please report it with the stack trace above";
        Path log = RunLog.write(command, line, ex, false);
        err.println(line + (log == null ? "" : " (also in " + log + ")"));
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
