package io.dtrain.train;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.metrics.Tracer;
import io.dtrain.model.GptModel;
import io.dtrain.train.dp.DataParallelStep;
import io.dtrain.train.dp.ZeroOneStep;
import io.dtrain.train.pp.PipelineStep;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Map;

/**
 * One rank's optimizer step in one parallel layout, and everything that depends on the layout: which part of the
 * model this rank holds, how gradients are synchronised, how the validation loss is computed and agreed on, which
 * pieces of a checkpoint this rank writes and how it resumes, and how the step's phases are timed. Built once per
 * run by {@link #create}; the {@link Trainer} loop only calls it.
 *
 * <p>Implementations: {@link SingleProcessStep} (one process), {@link DataParallelStep} (data parallelism, gradients
 * averaged in buckets during the backward pass), {@link ZeroOneStep} (data parallelism with ZeRO-1 sharded AdamW
 * state) and {@link PipelineStep} (P pipeline stages x D replicas). What they share (data, AdamW, counters,
 * non-finite handling, the step record) is {@link TrainStepBase}.
 */
public interface TrainStep extends AutoCloseable {

    /** The step for this run's layout: {@code parallel.pipeline.stages}, the data-parallel size, {@code optimizer.shard_state}. */
    static TrainStep create(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out) {
        if (cfg.parallel().pipelineStages() > 1) {
            return new PipelineStep(cfg, context, loader, out);
        }
        if (context.dataParallelSize() == 1) {
            return new SingleProcessStep(cfg, context, loader, out);
        }
        return cfg.optimizer().shardState() ? new ZeroOneStep(cfg, context, loader, out)
                : new DataParallelStep(cfg, context, loader, out);
    }

    /** The model this rank holds (with pipeline parallelism: its stage). */
    GptModel model();

    /** This rank's flat parameters, laid out by {@code model().layout()}. */
    INDArray params();

    /** Steps done so far, i.e. the 0-based index of the next step. */
    long step();

    /** Where the step records its phases' spans (trace.json). */
    void setTracer(Tracer tracer);

    /** One optimizer step on the next global batch; advances {@link #step()}. */
    StepStats run();

    /** The mean validation loss over the evaluation batches, the same on every rank. */
    double evaluate(Evaluator evaluator);

    /**
     * Writes this rank's share of the checkpoint of the current step under {@code <output.dir>/checkpoints}
     * ({@code extra}: the run's manifest entries); returns the step directory, or null when this rank writes none.
     */
    Path saveCheckpoint(Map<String, Object> extra) throws IOException;

    /** Restores parameters, AdamW state, step and counters from a checkpoint, agreeing with the other ranks. */
    void resume(Checkpoint checkpoint);

    /** {@code metrics/dp-rank<r>.json}: what this rank trained on and sent, one JSON object. */
    String summaryJson(double lastValLoss);

    @Override
    void close();
}
