package io.dtrain.parallel;

/**
 * A collective failed: a peer died, stalled, timed out or called a different collective. The message names
 * the collective, its sequence number and the ranks at fault; after it, the process group is unusable
 * (like NCCL after an abort): restart the job.
 */
public class CollectiveException extends RuntimeException {
    public CollectiveException(String message) {
        super(message);
    }

    public CollectiveException(String message, Throwable cause) {
        super(message, cause);
    }
}
