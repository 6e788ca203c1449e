package io.dtrain.config;

/**
 * A validated, fully resolved run configuration: one YAML file plus {@code --set a.b.c=value} overrides,
 * every key present (defaults filled in). Built by {@link ConfigLoader}; a new section is a new record here and
 * its rows in {@link ConfigSchema}.
 */
public record RunConfig(
        ModelConfig model,
        OptimizerConfig optimizer,
        ScheduleConfig schedule,
        DataConfig data,
        TrainingConfig training,
        OutputConfig output,
        MetricsConfig metrics,
        ParallelismConfig parallel) {

    /** Every key at its schema default (not a runnable config by itself: data.train and the run length are unset). */
    public static RunConfig defaults() {
        return ConfigSchema.defaults();
    }

    /**
     * Sequences per forward/backward pass on one rank of a data-parallel world of {@code dpSize} ranks:
     * training.micro_batch, or when that is 0 (auto) global_batch / dpSize, one micro-batch per rank per step.
     */
    public int microBatch(int dpSize) {
        if (training.microBatch() > 0) {
            return training.microBatch();
        }
        if (training.globalBatch() % dpSize != 0) {
            throw new ConfigException(null, -1, "training.global_batch",
                    "training.global_batch (" + training.globalBatch() + ") is not a multiple of the data-parallel size ("
                            + dpSize + "), which it must be with training.micro_batch 0 (= global_batch / data-parallel"
                            + " size); choose a global_batch divisible by " + dpSize + ", or set training.micro_batch");
        }
        return training.globalBatch() / dpSize;
    }

    /** Gradient-accumulation steps for a data-parallel world of {@code dpSize} ranks (Megatron's rule). */
    public int accumulationSteps(int dpSize) {
        int micro = microBatch(dpSize);
        int perStep = micro * dpSize;
        if (training.globalBatch() % perStep != 0) {
            throw new ConfigException(null, -1, "training.global_batch",
                    "training.global_batch (" + training.globalBatch() + ") is not a multiple of training.micro_batch ("
                            + micro + ") x data-parallel size (" + dpSize + ") = " + perStep
                            + "; choose a global_batch divisible by " + perStep);
        }
        return training.globalBatch() / perStep;
    }

    /**
     * This configuration for a resumed run: the checkpoint holds the weights, so {@code model.init_from}, which only
     * a fresh start reads, is cleared (the file it named may be gone by now).
     */
    public RunConfig forResume() {
        if (model.initFrom().isEmpty()) {
            return this;
        }
        ModelConfig m = new ModelConfig(model.vocabSize(), model.seqLen(), model.dModel(), model.nLayer(),
                model.nHead(), model.dFf(), model.norm(), model.activation(), model.dropout(), model.tieEmbeddings(),
                model.bias(), model.initStd(), model.layerNormEps(), model.dtype(), model.engine(), "");
        return new RunConfig(m, optimizer, schedule, data, training, output, metrics, parallel);
    }

    /** Optimizer steps this run takes: training.steps, or the steps that cover training.tokens. */
    public long totalSteps() {
        if (training.steps() > 0) {
            return training.steps();
        }
        long tokensPerStep = (long) training.globalBatch() * model.seqLen();
        return (training.tokens() + tokensPerStep - 1) / tokensPerStep;
    }
}
