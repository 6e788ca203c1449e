package io.dtrain.launcher;

import io.dtrain.config.ConfigException;
import picocli.CommandLine;

/**
 * Turns the errors a user can fix (bad config, bad input, missing checkpoint) into one clear line on stderr and
 * exit code 2, instead of a stack trace; everything else keeps its stack trace (exit code 1).
 */
final class ErrorHandler implements CommandLine.IExecutionExceptionHandler {
    @Override
    public int handleExecutionException(Exception ex, CommandLine cl, CommandLine.ParseResult parseResult) {
        if (isUserError(ex)) {
            cl.getErr().println("dtrain " + cl.getCommandName() + ": error: " + ex.getMessage());
            return 2;
        }
        ex.printStackTrace(cl.getErr());
        return 1;
    }

    static boolean isUserError(Throwable ex) {
        for (Throwable t = ex; t != null; t = t.getCause()) {
            if (t instanceof ConfigException || t instanceof UserError) {
                return true;
            }
            String n = t.getClass().getSimpleName();
            if (n.equals("CheckpointException") || n.equals("DataException")) {
                return true;
            }
        }
        return false;
    }
}
