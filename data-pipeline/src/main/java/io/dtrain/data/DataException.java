package io.dtrain.data;

import io.dtrain.common.UserFacingException;

/**
 * Input data the user has to fix (a corrupt shard, a bad record under the {@code fail} policy, an empty input set,
 * a tokenizer file that does not parse). The message names the file, the line or byte offset, and what to do.
 */
public class DataException extends UserFacingException {
    public DataException(String message) {
        super(message);
    }

    public DataException(String message, Throwable cause) {
        super(message, cause);
    }
}
