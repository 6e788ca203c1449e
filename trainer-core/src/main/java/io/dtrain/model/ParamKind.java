package io.dtrain.model;

/** What a parameter is; decides its weight-decay group. */
public enum ParamKind {
    /** Weight matrix of a linear layer: decayed. */
    MATRIX,
    /** Bias of a linear layer: not decayed unless optimizer.decay_biases_and_norms. */
    BIAS,
    /** LayerNorm gain or offset: not decayed unless optimizer.decay_biases_and_norms. */
    NORM,
    /** Token or position embedding: not decayed unless optimizer.decay_embeddings. */
    EMBEDDING
}
