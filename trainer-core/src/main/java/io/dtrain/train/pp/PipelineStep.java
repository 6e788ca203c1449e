package io.dtrain.train.pp;

import io.dtrain.checkpoint.ShardedCheckpointWriter;
import io.dtrain.checkpoint.ShardedCheckpointWriter.Part;
import io.dtrain.config.ConfigException;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.data.loader.MicroBatch;
import io.dtrain.model.GptModel;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.model.StagePartition;
import io.dtrain.optim.GradClipper;
import io.dtrain.parallel.FlatBuffer;
import io.dtrain.parallel.ReduceOp;
import io.dtrain.parallel.pipeline.PipelineGroups;
import io.dtrain.parallel.pipeline.PipelineSchedule;
import io.dtrain.train.Evaluator;
import io.dtrain.train.RankSums;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;
import io.dtrain.train.TrainStepBase;
import io.dtrain.train.dp.DataParallelGroup;
import io.dtrain.train.dp.SharedGradients;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Pipeline parallelism, P stages x D replicas: this rank holds one stage ({@link GptModel#forStage}) and runs the
 * step's M micro-batches through it by the schedule's program ({@link StageExecutor}). Then the stage's gradients
 * are averaged over its D replicas, the tied wte gradient is summed between stage 0 and the last stage, and one
 * world AllReduce gives every rank the loss (known only to the last stage) and the squared gradient norm (each
 * stage's share, the wte replica not counted twice), so all stages clip by the same global norm and take the same
 * decision on non-finite values. Replica 0 of each stage writes that stage's tensors into a shared checkpoint.
 * The stage's flat gradients are its data-parallel group's buffer ({@link SharedGradients}): in shared memory when
 * the stage's replicas share this host's memory, averaged there in place.
 */
public final class PipelineStep extends TrainStepBase {
    private final PipelineGroups pipe;
    /** The D replicas of this stage (a group of one for D = 1). */
    private final DataParallelGroup replicas;
    /** {@link #grads} and the stage group's buffer it lies in (also what keeps a shared mapping alive). */
    private final SharedGradients gradients;
    private final PeerPipeTransport transport;
    private final StageExecutor executor;
    /** The last stage of a tied model holds a replica of wte, at the end of its buffers. */
    private final boolean tiedReplica;
    private final ShardedCheckpointWriter checkpoints;
    private int peakLiveActivations;

    public PipelineStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out) {
        this(cfg, context, loader, out, checkedGroups(cfg, context));
    }

    private PipelineStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, PipelineGroups pipe) {
        this(cfg, context, loader, out, pipe, GptModel.forStage(cfg.model(),
                StagePartition.blocksPerStage(cfg.model(), pipe.stages(), cfg.parallel().pipelinePartition()), pipe.stage(),
                cfg.training().recomputeBlocks()));
    }

    private PipelineStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, PipelineGroups pipe,
                         GptModel model) {
        this(cfg, context, loader, out, pipe, model, SharedGradients.allocate(pipe.dataParallel(), model, System.getenv()));
    }

    private PipelineStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, PipelineGroups pipe,
                         GptModel model, SharedGradients gradients) {
        super(cfg, context, loader, out, model, gradients.array());
        this.gradients = gradients;
        this.pipe = pipe;
        this.replicas = DataParallelGroup.of(pipe.dataParallel());
        this.transport = new PeerPipeTransport(pipe.links(), s -> pipe.rankOf(s, pipe.replica()));
        this.executor = new StageExecutor(model, pipe.stage(), PipelineSchedule.byName(cfg.parallel().pipelineSchedule()),
                transport);
        this.tiedReplica = GptNames.hasTiedReplica(cfg.model(), pipe.stages(), pipe.stage());
        this.checkpoints = new ShardedCheckpointWriter(checkpointsDir, GptNames.layout(cfg.model(), model.blocksPerStage()),
                model.dataType(), cfg.output().keepCheckpoints(), pipe.world().rank(), pipe.world().size(),
                what -> pipe.world().barrierAsync(what).await());
        if (context.isLogger()) {
            out.printf(Locale.ROOT, "pipeline: %d stages x %d replicas, blocks per stage %s, schedule %s, %d micro-batches"
                            + " per step%n", pipe.stages(), pipe.replicas(), Arrays.toString(model.blocksPerStage()),
                    cfg.parallel().pipelineSchedule(), accumulation);
        }
        // Every replica of a stage initialises from the same seed; the broadcast makes them start equal.
        replicas.broadcastFromFirst(params, "initial parameters");
        model.setParams(params);
    }

    private static PipelineGroups checkedGroups(RunConfig cfg, RunContext context) {
        int stages = cfg.parallel().pipelineStages();
        PipelineGroups pipe = context.pipeline();
        if (pipe == null || pipe.stages() != stages) {
            throw new ConfigException(null, -1, "parallel.pipeline.stages", "parallel.pipeline.stages=" + stages
                    + " needs " + stages + " x D processes, one per stage and replica; this process "
                    + (pipe == null ? "runs alone: start the job with dtrain launch --nproc-per-node " + stages
                    : "was placed in a pipeline of " + pipe.stages() + " stages"));
        }
        if (cfg.optimizer().shardState()) {
            throw new ConfigException(null, -1, "optimizer.shard_state", "optimizer.shard_state (ZeRO-1) is not"
                    + " supported together with parallel.pipeline.stages > 1 yet; set one of them off");
        }
        if (cfg.parallel().dpOverlapSegments() > 1) {
            throw new ConfigException(null, -1, "parallel.dp.overlap_segments", "parallel.dp.overlap_segments splits a"
                    + " whole model inside one process; with parallel.pipeline.stages > 1 leave it at 1");
        }
        return pipe;
    }

    @Override
    public StepStats run() {
        long t0 = beginStep();
        double lr = schedule.lr(step());
        List<MicroBatch> microbatches = new ArrayList<>(accumulation);
        for (int j = 0; j < accumulation; j++) {
            microbatches.add(microBatch(j));
        }
        long c0 = System.nanoTime();
        tracer.span("data_wait", "data", t0, c0);
        StageExecutor.StageResult r = executor.trainStep(microbatches, step(), cfg.training().seed(), grads);
        long s0 = System.nanoTime();
        tracer.span("pipeline " + cfg.parallel().pipelineSchedule(), "compute", c0, s0);
        // only the gradients: the loss is known to the last stage alone and travels in the world sum below
        replicas.averageGradients(gradients.flat());
        if (pipe.tiedEmbedding() != null) {
            ParamSpec wte = model.layout().spec(GptNames.WTE);
            pipe.tiedEmbedding().allReduceAsync(FlatBuffer.of(grads.get(NDArrayIndex.interval(wte.offset(), wte.end()))),
                    ReduceOp.SUM, "tied wte gradient").await();
        }
        long owned = tiedReplica ? model.layout().spec(GptNames.WTE).offset() : grads.length();
        double stageNorm = GradClipper.globalNorm(grads.get(NDArrayIndex.interval(0, owned)));
        double[] totals = {pipe.isLastStage() ? r.lossSum() / r.losses() / pipe.replicas() : 0,
                pipe.replica() == 0 ? stageNorm * stageNorm : 0};
        RankSums.sum(pipe.world(), totals, "loss and squared gradient norm");
        double loss = totals[0];
        double norm = Math.sqrt(totals[1]);
        long o0 = System.nanoTime();
        tracer.span("gradient_sync", "comm", s0, o0);
        boolean skipped = !updateOrSkip(loss, norm, lr, () -> GradClipper.firstNonFinite(model.layout(), grads),
                "from another pipeline stage (see its log)");
        long o1 = System.nanoTime();
        tracer.span("optimizer", "optimizer", o0, o1);
        peakLiveActivations = Math.max(peakLiveActivations, r.peakLiveActivations());
        return finish(t0, loss, lr, norm, skipped, r.totalNanos() - r.idleNanos(), o1 - o0, o0 - s0,
                r.idleNanos() / 1e6);
    }

    /**
     * Replica {@code d}'s evaluation batches (b % D == d) run forward-only through the pipeline as micro-batches,
     * one pass per batch size (the last batch may be smaller, and a pass sums mean losses of equal-sized
     * micro-batches); the last stage's totals, added over the world (every other rank contributes zeros), give
     * every rank the one-process value.
     */
    @Override
    public double evaluate(Evaluator evaluator) {
        java.util.Map<Integer, List<MicroBatch>> bySize = new java.util.LinkedHashMap<>();
        for (int[][] batch : evaluator.batchesOf(replicas.rank(), replicas.size())) {
            bySize.computeIfAbsent(batch.length, size -> new ArrayList<>()).add(new MicroBatch(batch, new long[batch.length]));
        }
        double[] totals = new double[2];
        for (List<MicroBatch> sameSize : bySize.values()) {
            StageExecutor.StageResult r = executor.evaluate(sameSize);
            double tokensPerBatch = Evaluator.tokens(sameSize.get(0).windows());
            totals[0] += r.lossSum() * tokensPerBatch;
            totals[1] += r.losses() * tokensPerBatch;
        }
        RankSums.sum(pipe.world(), totals, "evaluation totals");
        return totals[0] / totals[1];
    }

    /** Replica 0 of each stage writes the stage's tensors (the last stage's wte replica is stage 0's wte). */
    @Override
    public Path saveCheckpoint(Map<String, Object> extra) throws IOException {
        List<ShardedCheckpointWriter.Piece> mine = new ArrayList<>();
        if (pipe.replica() == 0) {
            ParamLayout layout = model.layout();
            List<String> names = new ArrayList<>();
            for (ParamSpec s : layout.specs()) {
                if (!(tiedReplica && GptNames.WTE.equals(s.name()))) {
                    names.add(s.name());
                }
            }
            mine.addAll(ShardedCheckpointWriter.wholeTensors(Part.PARAMS, layout, params, names));
            mine.addAll(ShardedCheckpointWriter.wholeTensors(Part.ADAM_M, layout, adamw.m(), names));
            mine.addAll(ShardedCheckpointWriter.wholeTensors(Part.ADAM_V, layout, adamw.v(), names));
        }
        return checkpoints.write(step(), true, adamw.stepCount(), withProgress(extra), mine);
    }

    /** Every replica of the stage read the stage's tensors; the first replica's state is broadcast to the others. */
    @Override
    protected void agreeOnResumedState(Path checkpointDir) {
        broadcastResumedState(replicas, checkpointDir, true);
    }

    @Override
    protected long gradientBytesSent() {
        return replicas.gradientBytesSent();
    }

    @Override
    protected String layoutSummaryFields() {
        return String.format(Locale.ROOT, ",\"pipeline_stage\":%d,\"pipeline_stages\":%d,\"stage_parameters\":%d,"
                        + "\"pipeline_bytes_sent\":%d,\"pipeline_bytes_received\":%d,\"peak_live_activations\":%d",
                pipe.stage(), pipe.stages(), model.layout().size(), transport.bytesSent(), transport.bytesReceived(),
                peakLiveActivations) + gradients.summaryField();
    }
}
