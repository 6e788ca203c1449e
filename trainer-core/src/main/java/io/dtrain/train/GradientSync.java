package io.dtrain.train;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * How a rank turns its summed micro-batch gradients into the gradient of the global batch's mean loss.
 * One process: divide by the number of micro-batches. Data parallelism replaces this with an AllReduce (AVG).
 */
public interface GradientSync {
    /**
     * @param meanLocalLoss loss averaged over this rank's micro-batches
     * @param gradSum       gradients summed over this rank's micro-batches; scaled in place to the global mean
     * @param microBatches  micro-batches this rank ran in the step
     * @return the global batch's mean loss
     */
    double averageLossAndGradients(double meanLocalLoss, INDArray gradSum, int microBatches);

    /** The single-process case. */
    GradientSync LOCAL = (meanLocalLoss, gradSum, microBatches) -> {
        if (microBatches > 1) {
            gradSum.divi(microBatches);
        }
        return meanLocalLoss;
    };
}
