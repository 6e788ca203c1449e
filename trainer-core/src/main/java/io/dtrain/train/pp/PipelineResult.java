package io.dtrain.train.pp;

import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * What one pipelined step (or evaluation) produced.
 *
 * @param loss                 mean loss over the micro-batches
 * @param microbatches         M
 * @param peakLiveActivations  per stage, the most micro-batches' activations held at once (counted by the
 *                             {@link ActivationRegistry})
 * @param tiedHeadGrad         with tied embeddings, the last stage's gradient of its wte replica [V, D] (mean over
 *                             micro-batches); null when untied or when nothing went backward
 */
public record PipelineResult(double loss, int microbatches, int[] peakLiveActivations, INDArray tiedHeadGrad) {

    /**
     * ADDS the tied head's gradient into wte's slot of a flat gradient buffer: in-process, what the embedding group
     * (stage 0 and the last stage) does with an all-reduce in Megatron. No-op when untied.
     */
    public void addTiedHeadGradInto(ParamLayout layout, INDArray flatGrads) {
        if (tiedHeadGrad != null) {
            layout.view(flatGrads, GptNames.WTE).addi(tiedHeadGrad);
        }
    }
}
