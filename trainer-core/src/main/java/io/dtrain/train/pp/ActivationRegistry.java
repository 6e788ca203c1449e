package io.dtrain.train.pp;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.HashMap;
import java.util.Map;

/**
 * The activation buffers each stage keeps between a micro-batch's forward and its backward (the stage's input,
 * from which the backward recomputes the forward). Counts live buffers per stage and remembers the peak, which
 * is what a schedule's memory claim is about: GPipe M, 1F1B at most P - rank.
 */
public final class ActivationRegistry {
    private final Map<Integer, INDArray>[] stored;
    private final int[] peak;

    @SuppressWarnings("unchecked")
    public ActivationRegistry(int stages) {
        stored = new Map[stages];
        peak = new int[stages];
        for (int s = 0; s < stages; s++) {
            stored[s] = new HashMap<>();
        }
    }

    public void store(int stage, int microbatch, INDArray input) {
        if (stored[stage].putIfAbsent(microbatch, input) != null) {
            throw new IllegalStateException("stage " + stage + " already holds the activations of micro-batch "
                    + microbatch + ": it was forwarded twice before its backward");
        }
        peak[stage] = Math.max(peak[stage], stored[stage].size());
    }

    /** Removes and returns the stored input of a micro-batch (its backward is running). */
    public INDArray release(int stage, int microbatch) {
        INDArray x = stored[stage].remove(microbatch);
        if (x == null) {
            throw new IllegalStateException("stage " + stage + " holds no activations of micro-batch " + microbatch
                    + ": backward without a forward, or backward twice");
        }
        return x;
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
