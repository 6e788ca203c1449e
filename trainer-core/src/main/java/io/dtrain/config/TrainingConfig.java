package io.dtrain.config;

/**
 * The run's length, batch sizes and cadences. Keys under {@code training:}.
 * Gradient-accumulation steps = global_batch / (micro_batch x data-parallel size), computed at run time
 * ({@link RunConfig#accumulationSteps}); the micro-batch of a run is {@link RunConfig#microBatch}.
 *
 * @param globalBatch        sequences per optimizer step, over all data-parallel ranks
 * @param microBatch         sequences per forward/backward pass on one rank, as configured: 0 = global_batch /
 *                           data-parallel size, known at run time ({@link RunConfig#microBatch})
 * @param steps              optimizer steps to run (0 = bounded by tokens; exactly one of steps and tokens is > 0)
 * @param tokens             tokens to train on (0 = bounded by steps); steps = ceil(tokens / (global_batch x seq_len))
 * @param seed               seed of initialisation and dropout
 * @param logInterval        console line every N steps
 * @param evalInterval       evaluate every N steps (0 = only at the end)
 * @param evalSequences      validation sequences per evaluation: a fixed set, whatever the micro-batch and the
 *                           data-parallel size
 * @param checkpointInterval checkpoint every N steps (0 = only at the end)
 * @param onNonFinite        "stop" or "skip" when loss or gradients are NaN/Inf
 * @param recompute          "none" or "blocks": keep only block inputs and recompute each block before its backward
 * @param precision          "fp32", "fp16" (mixed precision with dynamic loss scaling) or "bf16" (refused where unsupported)
 * @param lossScaleInitial   fp16: the loss scale at the start
 * @param lossScaleGrowthInterval fp16: steps without overflow before the scale doubles
 * @param lossScaleMin       fp16: the floor; an overflow there stops the run
 */
public record TrainingConfig(
        int globalBatch,
        int microBatch,
        long steps,
        long tokens,
        long seed,
        int logInterval,
        int evalInterval,
        int evalSequences,
        int checkpointInterval,
        String onNonFinite,
        String recompute,
        String precision,
        double lossScaleInitial,
        int lossScaleGrowthInterval,
        double lossScaleMin) {

    public boolean recomputeBlocks() {
        return "blocks".equals(recompute);
    }

    /** fp16 mixed precision with dynamic loss scaling. */
    public boolean fp16() {
        return "fp16".equals(precision);
    }

    public static TrainingConfig defaults() {
        return ConfigSchema.defaults().training();
    }
}
