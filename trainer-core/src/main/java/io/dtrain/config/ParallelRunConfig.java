package io.dtrain.config;

/**
 * How data-parallel ranks average gradients. Keys under {@code parallel:}; the world itself (ranks, addresses)
 * comes from the launcher's environment, not from here.
 *
 * @param dpBucketMb       gradients are AllReduced in buckets of at most this many MiB (PyTorch DDP's
 *                         bucket_cap_mb, default 25); a bucket never straddles two overlap stages
 * @param dpOverlapStages  split the model into this many stage graphs inside each process so that the buckets of
 *                         the later blocks are AllReduced while the earlier blocks still run their backward
 *                         (1 = one graph: every AllReduce starts after the whole backward)
 */
public record ParallelRunConfig(double dpBucketMb, int dpOverlapStages) {

    public static ParallelRunConfig defaults() {
        return ConfigSchema.defaults().parallel();
    }
}
