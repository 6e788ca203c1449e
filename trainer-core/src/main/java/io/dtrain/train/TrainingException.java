package io.dtrain.train;

import io.dtrain.common.UserFacingException;

/**
 * Training cannot go on, for a reason the user fixes: a non-finite loss or gradient with on_non_finite=stop, a run
 * that does not fit in memory, a checkpoint that cannot be resumed, replicas that resumed differently.
 */
public final class TrainingException extends UserFacingException {
    public TrainingException(String message) {
        super(message);
    }

    public TrainingException(String message, Throwable cause) {
        super(message, cause);
    }
}
