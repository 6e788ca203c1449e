package io.dtrain.config;

/**
 * How the ranks of a job share the work. Keys under {@code parallel:}; the world itself (ranks, addresses)
 * comes from the launcher's environment, not from here.
 *
 * @param dpBucketMb        gradients are AllReduced in buckets of at most this many MiB (PyTorch DDP's
 *                          bucket_cap_mb, default 25); a bucket never straddles two overlap segments
 * @param dpOverlapSegments split the model into this many segments (graphs of contiguous blocks) inside each process
 *                          so that the buckets of the later blocks are AllReduced while the earlier blocks still run
 *                          their backward (1 = one graph: every AllReduce starts after the whole backward)
 * @param pipelineStages    P: the model's blocks are split over P processes (world = P x data-parallel size)
 * @param pipelineSchedule  "1f1b" or "gpipe"
 * @param pipelinePartition blocks per stage, comma-separated, or "" for a split balanced by estimated cost
 */
public record ParallelismConfig(double dpBucketMb, int dpOverlapSegments, int pipelineStages, String pipelineSchedule,
                                String pipelinePartition) {

    public static ParallelismConfig defaults() {
        return ConfigSchema.defaults().parallel();
    }
}
