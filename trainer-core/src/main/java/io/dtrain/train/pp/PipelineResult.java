package io.dtrain.train.pp;

/**
 * What one pipelined step (or evaluation) produced.
 *
 * @param loss                 mean loss over the micro-batches
 * @param microbatches         M
 * @param peakLiveActivations  per stage, the most micro-batches' activations held at once (counted by the
 *                             {@link ActivationRegistry})
 */
public record PipelineResult(double loss, int microbatches, int[] peakLiveActivations) {
}
