package io.dtrain.train.pp;

import java.util.HashSet;
import java.util.Set;

/**
 * Which micro-batches' activations each stage holds between their forward and backward pass (the stage itself
 * keeps them: see {@link io.dtrain.model.Stage}). Counts them per stage and remembers the peak, which is what a
 * schedule's memory claim is about: GPipe M, 1F1B at most P - rank.
 */
public final class ActivationRegistry {
    private final Set<Integer>[] stored;
    private final int[] peak;

    @SuppressWarnings("unchecked")
    public ActivationRegistry(int stages) {
        stored = new Set[stages];
        peak = new int[stages];
        for (int s = 0; s < stages; s++) {
            stored[s] = new HashSet<>();
        }
    }

    public void hold(int stage, int microbatch) {
        if (!stored[stage].add(microbatch)) {
            throw new IllegalStateException("stage " + stage + " already holds the activations of micro-batch "
                    + microbatch + ": it was forwarded twice before its backward");
        }
        peak[stage] = Math.max(peak[stage], stored[stage].size());
    }

    /** The micro-batch's backward is running: its activations are released. */
    public void release(int stage, int microbatch) {
        if (!stored[stage].remove(microbatch)) {
            throw new IllegalStateException("stage " + stage + " holds no activations of micro-batch " + microbatch
                    + ": backward without a forward, or backward twice");
        }
    }

    public int live(int stage) {
        return stored[stage].size();
    }

    public int peak(int stage) {
        return peak[stage];
    }

    public int[] peaks() {
        return peak.clone();
    }
}
