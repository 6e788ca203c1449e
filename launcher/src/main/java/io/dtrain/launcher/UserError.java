package io.dtrain.launcher;

import io.dtrain.common.UserFacingException;

/** A mistake in how dtrain was invoked; printed as one line, exit code 2. */
public final class UserError extends UserFacingException {
    public UserError(String message) {
        super(message);
    }

    public UserError(String message, Throwable cause) {
        super(message, cause);
    }
}
