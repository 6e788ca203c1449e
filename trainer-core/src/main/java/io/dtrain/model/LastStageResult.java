package io.dtrain.model;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * Result of the last stage's loss and backward pass.
 *
 * @param loss           mean next-token cross-entropy of the micro-batch
 * @param gradInput      dL/dx_in, shape [B, T, D]
 * @param paramGrads     gradients of the parameters this stage owns in the layout, by checkpoint name
 * @param headWeightGrad with tied embeddings: dL/d(wte) [V, D] through the LM head only, to be ADDED into
 *                       wte's gradient (wte belongs to stage 0; in a pipeline this is the gradient of the last
 *                       stage's wte replica that is summed with stage 0's, as Megatron's embedding group does);
 *                       null when the head is untied
 */
public record LastStageResult(double loss, INDArray gradInput, Map<String, INDArray> paramGrads, INDArray headWeightGrad) {

    /** ADDS this stage's gradients, and the tied head's gradient into wte's slot, into a flat gradient buffer. */
    public void addParamGradsInto(ParamLayout layout, INDArray flatGrads) {
        new StageBackward(gradInput, paramGrads).addParamGradsInto(layout, flatGrads);
        if (headWeightGrad != null) {
            layout.view(flatGrads, GptNames.WTE).addi(headWeightGrad);
        }
    }
}
