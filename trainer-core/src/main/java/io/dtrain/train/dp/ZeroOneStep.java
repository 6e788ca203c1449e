package io.dtrain.train.dp;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.checkpoint.ShardedCheckpointWriter;
import io.dtrain.checkpoint.ShardedCheckpointWriter.Part;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.model.GptModel;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.optim.GradClipper;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.train.Evaluator;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;
import io.dtrain.train.TrainStepBase;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Data parallelism with ZeRO-1 ({@code optimizer.shard_state: true}): every rank holds the whole model but AdamW
 * state for its shard of the flat buffers only ({@link ZeroOneSharding}). Per step the summed gradients are
 * reduce-scattered, the global norm is summed over the shards, each rank updates its shard of the parameters and
 * the parameters are all-gathered. A checkpoint is written by every rank: rank 0 the parameters, each rank its
 * shard of the moments ({@link ShardedCheckpointWriter}). The flat gradients are the group's buffer
 * ({@link SharedGradients}): in shared memory when the ranks share this host's memory, averaged there in place.
 */
public final class ZeroOneStep extends TrainStepBase {
    private final DataParallelGroup replicas;
    private final ZeroOneSharding zero;
    /** {@link #grads} and the group's buffer it lies in (also what keeps a shared mapping alive). */
    private final SharedGradients gradients;
    private final ShardedCheckpointWriter checkpoints;

    public ZeroOneStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out) {
        this(cfg, context, loader, out, wholeModel(cfg));
    }

    private ZeroOneStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, GptModel model) {
        this(cfg, context, loader, out, model, new ZeroOneSharding(context.world(), model.layout().size(), model.dataType()),
                SharedGradients.allocate(context.world(), model, System.getenv()));
    }

    private ZeroOneStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, GptModel model,
                        ZeroOneSharding zero, SharedGradients gradients) {
        super(cfg, context, loader, out, model, zero.from(), zero.to(), gradients.array());
        this.zero = zero;
        this.gradients = gradients;
        this.replicas = DataParallelGroup.of(context.world());
        ProcessGroup group = context.world();
        this.checkpoints = new ShardedCheckpointWriter(checkpointsDir, model.layout(), model.dataType(),
                cfg.output().keepCheckpoints(), group.rank(), group.size(), what -> group.barrierAsync(what).await());
        // Every rank initialises from the same seed; the broadcast makes "replicas start equal" a fact, not a hope.
        replicas.broadcastFromFirst(params, "initial parameters");
        model.setParams(params);
    }

    @Override
    public StepStats run() {
        long t0 = beginStep();
        double lr = schedule.lr(step());
        Pass pass = forwardBackward(graph -> { });
        long s0 = System.nanoTime();
        zero.reduceScatterGradients(gradients, accumulation);
        double loss = replicas.averageLoss(pass.meanLoss());
        long o0 = System.nanoTime();
        tracer.span("gradient_allreduce", "comm", s0, o0);
        double norm = zero.globalNorm(grads);
        boolean skipped = !updateOrSkip(loss, norm, lr,
                () -> GradClipper.firstNonFinite(model.layout(), grads, zero.from(), zero.to()),
                "from another rank's ZeRO-1 shard (see its log)");
        long o1 = System.nanoTime();
        tracer.span("optimizer", "optimizer", o0, o1);
        return finish(t0, loss, lr, norm, skipped, pass.computeNanos(), o1 - o0, o0 - s0, Double.NaN);
    }

    /** This rank's shard updated, then everyone's shards into everyone's parameters. */
    @Override
    protected void applyUpdate(double lr, double clipFactor) {
        super.applyUpdate(lr, clipFactor);
        zero.allGatherParameters(params);
    }

    @Override
    public double evaluate(Evaluator evaluator) {
        return evaluator.meanLoss(replicas.rank(), replicas.size(), totals -> replicas.sum(totals, "evaluation totals"));
    }

    /** Rank 0 writes the parameters, every rank its shard of the AdamW moments. */
    @Override
    public Path saveCheckpoint(Map<String, Object> extra) throws IOException {
        ParamLayout layout = model.layout();
        List<ShardedCheckpointWriter.Piece> mine = new ArrayList<>();
        if (context.isCheckpointWriter()) {
            List<String> all = layout.specs().stream().map(ParamSpec::name).toList();
            mine.addAll(ShardedCheckpointWriter.wholeTensors(Part.PARAMS, layout, params, all));
        }
        mine.addAll(ShardedCheckpointWriter.shardOf(Part.ADAM_M, layout, adamw.m(), zero.from(), zero.to()));
        mine.addAll(ShardedCheckpointWriter.shardOf(Part.ADAM_V, layout, adamw.v(), zero.from(), zero.to()));
        return checkpoints.write(step(), true, adamw.stepCount(), withProgress(extra), mine);
    }

    /** Each rank reads its own shard of the moments (from a checkpoint of any layout). */
    @Override
    protected void readOptimizerState(Checkpoint ck) {
        ck.readOptimizerShard(model.layout(), zero.from(), zero.to(), adamw.m(), adamw.v());
    }

    /** The parameters are broadcast; the moments are not: each rank read its own shard. */
    @Override
    protected void agreeOnResumedState(Path checkpointDir) {
        broadcastResumedState(replicas, checkpointDir, false);
    }

    @Override
    protected long gradientBytesSent() {
        return replicas.gradientBytesSent() + zero.gradientBytesSent();
    }

    /** Whether the gradients are in the group's shared memory (averaged in place), for the run's summary. */
    @Override
    protected String layoutSummaryFields() {
        return gradients.summaryField();
    }
}
