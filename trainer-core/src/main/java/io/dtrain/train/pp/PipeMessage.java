package io.dtrain.train.pp;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * A tensor passed between neighbouring stages.
 *
 * @param payload    an activation (downstream) or a gradient (upstream)
 * @param microbatch the micro-batch it belongs to
 * @param tensor     [B, T, D]
 */
public record PipeMessage(Payload payload, int microbatch, INDArray tensor) {

    public enum Payload {
        ACTIVATION, GRADIENT
    }
}
