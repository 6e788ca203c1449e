package io.dtrain.parallel;

import io.dtrain.common.UserFacingException;

/**
 * A collective failed: a peer died, stalled, timed out or called a different collective. The message names the
 * ranks at fault first, then the collective, its sequence number and the rank that saw it, and where its thread
 * dump is; after it, the process group is unusable (like NCCL after an abort): restart the job. User-facing: a dead
 * or stalled process is something to look into and restart, not a bug of the collective.
 */
public class CollectiveException extends UserFacingException {
    public CollectiveException(String message) {
        super(message);
    }

    public CollectiveException(String message, Throwable cause) {
        super(message, cause);
    }
}
