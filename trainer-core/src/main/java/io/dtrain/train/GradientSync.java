package io.dtrain.train;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * How a rank turns its summed micro-batch gradients into the gradient of the global batch's mean loss, and how
 * the ranks of a data-parallel group agree on everything else (start state, evaluation totals).
 * One process: divide by the number of micro-batches, nothing to agree on. Data parallelism
 * ({@link io.dtrain.train.dp.DataParallelSync}) replaces this with an AllReduce (AVG) and broadcasts from rank 0.
 */
public interface GradientSync {
    /**
     * @param meanLocalLoss loss averaged over this rank's micro-batches
     * @param gradSum       gradients summed over this rank's micro-batches; scaled in place to the global mean
     * @param microBatches  micro-batches this rank ran in the step
     * @return the global batch's mean loss
     */
    double averageLossAndGradients(double meanLocalLoss, INDArray gradSum, int microBatches);

    /** Overwrites {@code flat} (1-D, contiguous) on every rank with rank 0's values. One process: nothing to do. */
    default void broadcastFromRank0(INDArray flat, String what) {
    }

    /** Replaces each element of {@code values} by its sum over the ranks. One process: nothing to do. */
    default void sumAcrossRanks(double[] values) {
    }

    /** Bytes this rank sent averaging gradients so far (0 for one process). */
    /** This host's wall clock minus rank 0's, in milliseconds, as measured at rendezvous (0 for one process). */
    default double clockOffsetToRank0Ms() {
        return 0;
    }

    default long gradientBytesSent() {
        return 0;
    }

    /** The single-process case. */
    GradientSync LOCAL = (meanLocalLoss, gradSum, microBatches) -> {
        if (microBatches > 1) {
            gradSum.divi(microBatches);
        }
        return meanLocalLoss;
    };
}
