package io.dtrain.hf;

import io.dtrain.common.UserFacingException;

/**
 * A model file to import or export cannot be read, does not match the configuration, or the configuration cannot
 * be expressed in the target format. The message names the file or key and says what to do.
 */
public final class ModelFileException extends UserFacingException {
    public ModelFileException(String message) {
        super(message);
    }

    public ModelFileException(String message, Throwable cause) {
        super(message, cause);
    }
}
