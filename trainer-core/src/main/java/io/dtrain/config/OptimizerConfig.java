package io.dtrain.config;

/**
 * AdamW with decoupled weight decay and global gradient-norm clipping. Keys under {@code optimizer:}.
 *
 * @param lr                peak learning rate (after warm-up)
 * @param minLr             learning rate at the end of the cosine decay
 * @param beta1             AdamW beta1
 * @param beta2             AdamW beta2
 * @param eps               AdamW epsilon
 * @param weightDecay       decoupled weight decay (applied to matrices of linear layers)
 * @param decayBiasesAndNorms also decay biases and LayerNorm gains/offsets
 * @param decayEmbeddings   also decay token/position embeddings
 * @param gradClip          clip the global gradient L2 norm to this value (0 = no clipping)
 * @param lrScaling         "none", "linear" or "sqrt": scale lr with the data-parallel world size
 * @param shardState        ZeRO-1: shard AdamW state over data-parallel ranks (data-parallel issue)
 */
public record OptimizerConfig(
        double lr,
        double minLr,
        double beta1,
        double beta2,
        double eps,
        double weightDecay,
        boolean decayBiasesAndNorms,
        boolean decayEmbeddings,
        double gradClip,
        String lrScaling,
        boolean shardState) {

    public static OptimizerConfig defaults() {
        return ConfigSchema.defaults().optimizer();
    }
}
