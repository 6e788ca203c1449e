package io.dtrain.launcher;

/** A mistake in how dtrain was invoked; printed as one line, exit code 2. */
public final class UserError extends RuntimeException {
    public UserError(String message) {
        super(message);
    }
}
