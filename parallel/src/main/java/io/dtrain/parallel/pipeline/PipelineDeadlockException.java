package io.dtrain.parallel.pipeline;

/** Every unfinished stage waits on a receive (nothing sent yet) or a send (peer's buffer full). */
public final class PipelineDeadlockException extends RuntimeException {
    public PipelineDeadlockException(String message) {
        super(message);
    }
}
