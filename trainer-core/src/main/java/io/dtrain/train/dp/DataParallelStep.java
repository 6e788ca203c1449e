package io.dtrain.train.dp;

import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.model.GptModel;
import io.dtrain.optim.GradClipper;
import io.dtrain.train.Evaluator;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;
import io.dtrain.train.TrainStepBase;

import java.io.PrintStream;
import java.nio.file.Path;

/**
 * Data parallelism, as PyTorch DDP does it: every rank holds the whole model and runs its share of the global
 * batch; on the step's last micro-batch each graph's gradients are divided by the micro-batch count and their
 * AllReduce (AVG) starts in buckets as soon as that graph's backward is done ({@link GradientBuckets}), so with
 * {@code parallel.dp.overlap_segments > 1} later blocks' buckets travel while earlier blocks still compute. Then the
 * mean loss, and every rank takes the same AdamW step on the same averaged gradients.
 *
 * <p>The flat gradients are the group's buffer ({@link SharedGradients}): in shared memory when the ranks share this
 * host's memory, so the shared-memory exchange averages the buckets in place.
 */
public final class DataParallelStep extends TrainStepBase {
    private final DataParallelGroup replicas;
    private final GradientBuckets buckets;
    /** {@link #grads} and the group's buffer it lies in (also what keeps a shared mapping alive). */
    private final SharedGradients gradients;

    public DataParallelStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out) {
        this(cfg, context, loader, out, wholeModel(cfg));
    }

    private DataParallelStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, GptModel model) {
        this(cfg, context, loader, out, model, SharedGradients.allocate(context.world(), model, System.getenv()));
    }

    private DataParallelStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, GptModel model,
                             SharedGradients gradients) {
        super(cfg, context, loader, out, model, gradients.array());
        this.gradients = gradients;
        this.replicas = DataParallelGroup.of(context.world());
        long[][] graphRanges = new long[model.numStages()][];
        for (int s = 0; s < graphRanges.length; s++) {
            graphRanges[s] = model.layout().stageRange(s);
        }
        this.buckets = new GradientBuckets(context.world(), graphRanges, model.layout().size(),
                GradientBuckets.elementsPerBucket(cfg.parallel().dpBucketMb(), model.dataType().width()));
        // Every rank initialises from the same seed; the broadcast makes "replicas start equal" a fact, not a hope.
        replicas.broadcastFromFirst(params, "initial parameters");
        model.setParams(params);
    }

    @Override
    public StepStats run() {
        long t0 = beginStep();
        double lr = schedule.lr(step());
        Pass pass = forwardBackward(graph -> buckets.launchStage(graph, grads, gradients.flat(), accumulation, tracer));
        // Exposed communication: from the end of the backward until the last bucket and the loss are averaged.
        long s0 = System.nanoTime();
        buckets.awaitAll();
        double loss = replicas.averageLoss(pass.meanLoss());
        long o0 = System.nanoTime();
        tracer.span("gradient_allreduce", "comm", s0, o0);
        double norm = GradClipper.globalNorm(grads);
        boolean skipped = !updateOrSkip(loss, norm, lr, () -> GradClipper.firstNonFinite(model.layout(), grads),
                "although every gradient is finite (their squares overflow)");
        long o1 = System.nanoTime();
        tracer.span("optimizer", "optimizer", o0, o1);
        return finish(t0, loss, lr, norm, skipped, pass.computeNanos(), o1 - o0, o0 - s0, Double.NaN);
    }

    /** Batch b on replica b % D; the loss and token totals are summed over the replicas. */
    @Override
    public double evaluate(Evaluator evaluator) {
        return evaluator.meanLoss(replicas.rank(), replicas.size(), totals -> replicas.sum(totals, "evaluation totals"));
    }

    /** Every replica read the checkpoint; rank 0's parameters and moments are broadcast. */
    @Override
    protected void agreeOnResumedState(Path checkpointDir) {
        broadcastResumedState(replicas, checkpointDir, true);
    }

    /** Whether the gradients are in the group's shared memory (AllReduced in place), for the run's summary. */
    @Override
    protected String layoutSummaryFields() {
        return gradients.summaryField();
    }

    @Override
    protected long gradientBytesSent() {
        return replicas.gradientBytesSent() + buckets.bytesSent();
    }
}
