package io.dtrain.model;

/**
 * Forward and backward time of the micro-batches since the last {@link #reset()}, for the step record.
 *
 * <p>The last stage computes forward and backward in one SameDiff call; a listener marks the start of its first
 * backward op, and the call is split there. A middle stage's backward call recomputes its forward first; that
 * recomputation counts as backward, as in Megatron's timers with activation recomputation.
 */
public final class PhaseClock {
    private long forwardNanos;
    private long backwardNanos;

    public synchronized void reset() {
        forwardNanos = 0;
        backwardNanos = 0;
    }

    public synchronized void addForward(long nanos) {
        forwardNanos += nanos;
    }

    public synchronized void addBackward(long nanos) {
        backwardNanos += nanos;
    }

    public synchronized double forwardMs() {
        return forwardNanos / 1e6;
    }

    public synchronized double backwardMs() {
        return backwardNanos / 1e6;
    }
}
