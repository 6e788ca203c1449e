package io.dtrain.checkpoint;

import io.dtrain.common.UserFacingException;

/**
 * A checkpoint cannot be found, read or matched to the model. The message names the file and says what to do.
 * Unchecked so a trainer can let it reach the CLI, which prints the message.
 */
public final class CheckpointException extends UserFacingException {
    public CheckpointException(String message) {
        super(message);
    }

    public CheckpointException(String message, Throwable cause) {
        super(message, cause);
    }
}
