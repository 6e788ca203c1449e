package io.dtrain.model;

import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Map;

/**
 * Result of a stage's backward pass.
 *
 * @param gradInput  dL/dx_in, shape [B, T, D] (sent to the previous stage, or scatter-added into the embeddings)
 * @param paramGrads gradient of each of this stage's graph parameters, by checkpoint name
 */
public record StageBackward(INDArray gradInput, Map<String, INDArray> paramGrads) {

    /** ADDS the parameter gradients into a flat gradient buffer laid out by {@code layout}. */
    public void addParamGradsInto(ParamLayout layout, INDArray flatGrads) {
        for (Map.Entry<String, INDArray> e : paramGrads.entrySet()) {
            layout.view(flatGrads, e.getKey()).addi(e.getValue());
        }
    }
}
