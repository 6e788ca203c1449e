package io.dtrain.common;

/**
 * A failure the user can fix: bad input, a bad configuration, a missing file, a full disk, a run too big for
 * memory, an unreachable, dead or stalled peer. Its message is one line saying what happened, what was affected and what to do; the CLI prints it
 * alone and exits with code 2, keeping the stack trace for the run's log. Every other exception is a bug in
 * dtrain and is reported as one.
 */
public class UserFacingException extends RuntimeException {
    public UserFacingException(String message) {
        super(message);
    }

    public UserFacingException(String message, Throwable cause) {
        super(message, cause);
    }
}
