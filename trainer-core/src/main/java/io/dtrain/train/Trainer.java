package io.dtrain.train;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.checkpoint.CheckpointWriter;
import io.dtrain.checkpoint.ShardedCheckpointWriter;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.data.loader.MicroBatch;
import io.dtrain.data.loader.TokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.metrics.RunMetrics;
import io.dtrain.metrics.Tracer;
import io.dtrain.config.ConfigException;
import io.dtrain.model.GptModel;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.StagePartition;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.pipeline.PipelineSchedule;
import io.dtrain.pipeline.PipelineGroups;
import io.dtrain.pipeline.StageExecutor;
import io.dtrain.train.dp.DataParallelSync;
import io.dtrain.train.dp.GradientBuckets;
import io.dtrain.train.dp.ZeroOneSharding;
import io.dtrain.optim.AdamW;
import io.dtrain.optim.GradClipper;
import io.dtrain.optim.LrSchedule;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;

/**
 * The training loop of one rank. Data parallelism plugs in through {@link GradientSync}: gradients are averaged
 * in buckets launched during the backward pass ({@link GradientBuckets}; {@code parallel.dp.overlap_segments > 1}
 * splits the model so later blocks' buckets overlap earlier blocks' backward), or, with
 * {@code optimizer.shard_state}, reduce-scattered to ZeRO-1 optimizer shards ({@link ZeroOneSharding}).
 *
 * <p>Per optimizer step: zero the flat gradients; for each micro-batch, forward + backward through all stages,
 * adding into the flat gradients; average over micro-batches (and ranks); check finiteness; clip the global norm;
 * AdamW on the flat buffers; copy the new parameters into the stage graphs. Everything that decides the numbers
 * (initial weights, data order, dropout masks) is a pure function of seeds and the step, so a resumed run repeats
 * an uninterrupted one exactly.
 */
public final class Trainer implements AutoCloseable {
    private final RunConfig cfg;
    private final RunContext run;
    private final Tokenizer tokenizer;
    private final GptModel model;
    private final INDArray params;
    private final INDArray grads;
    private final AdamW adamw;
    private final LrSchedule schedule;
    private final TokenDataset trainData;
    private final TokenDataset valData;
    private final BatchLoader loader;
    private final Evaluator evaluator;
    private final int accumulation;
    private final long totalSteps;
    private final Path runDir;
    private final PrintStream out;
    /** Data parallelism: the gradient buckets launched during the backward pass; null for one process. */
    private final GradientBuckets buckets;
    /** ZeRO-1 (optimizer.shard_state with data parallelism): this rank's shard of the AdamW state; else null. */
    private final ZeroOneSharding zero;
    /** Pipeline parallelism: this rank's stage and its groups; null for P = 1. */
    private final PipelineGroups pipe;
    /** Runs this rank's stage of each step's pipeline schedule; null for P = 1. */
    private final StageExecutor stageExecutor;
    private int peakLiveActivations;
    /** Checkpoints with several writers (ZeRO-1 shards, pipeline stages); made on first use. */
    private ShardedCheckpointWriter shardedWriter;
    private long step;
    private long tokensSeen;
    private long stepsRun;
    private long samplesServed;
    private long sampleDigest;
    /** Spans of each step's phases while {@link #train()} runs (trace.json). */
    private Tracer tracer = Tracer.NOOP;

    public Trainer(RunConfig cfg, RunContext run, PrintStream out) {
        this.cfg = cfg;
        this.run = run;
        this.out = out;
        this.runDir = Path.of(cfg.output().dir());
        this.accumulation = cfg.accumulationSteps(run.dataParallelSize());
        this.totalSteps = cfg.totalSteps();
        this.tokenizer = TrainTokenizer.forConfig(cfg);
        int seqLen = cfg.model().seqLen();
        BadRecordPolicy policy = BadRecordPolicy.parse(cfg.data().onBadRecord());
        this.trainData = TokenDatasets.load(cfg.data().train(), tokenizer, seqLen, policy);
        report("train", cfg.data().train(), trainData);
        if (cfg.data().val() != null && !cfg.data().val().isBlank()) {
            this.valData = TokenDatasets.load(cfg.data().val(), tokenizer, seqLen, policy);
            report("val", cfg.data().val(), valData);
        } else {
            this.valData = null;
        }
        this.loader = new BatchLoader(trainData, cfg.training().globalBatch(), cfg.microBatch(run.dataParallelSize()),
                run.dataParallelRank(), run.dataParallelSize(), cfg.data().seed());
        int overlapStages = cfg.parallel().dpOverlapSegments();
        if (overlapStages > cfg.model().nLayer()) {
            throw new ConfigException(null, -1, "parallel.dp.overlap_segments", "parallel.dp.overlap_segments ("
                    + overlapStages + ") exceeds model.n_layer (" + cfg.model().nLayer() + "): each overlap segment needs"
                    + " at least one block; use 1.." + cfg.model().nLayer());
        }
        this.pipe = run.pipeline();
        int stages = cfg.parallel().pipelineStages();
        if (stages > 1) {
            checkPipelineSetup(stages, overlapStages);
            int[] partition = StagePartition.blocksPerStage(cfg.model(), stages, cfg.parallel().pipelinePartition());
            this.model = GptModel.forStage(cfg.model(), partition, pipe.stage());
            this.stageExecutor = new StageExecutor(model, pipe.stage(),
                    PipelineSchedule.byName(cfg.parallel().pipelineSchedule()), pipe.transport());
            if (run.isLogger()) {
                out.printf(Locale.ROOT, "pipeline: %d stages x %d replicas, blocks per stage %s, schedule %s, %d micro-batches"
                                + " per step%n", stages, pipe.replicas(), java.util.Arrays.toString(partition),
                        cfg.parallel().pipelineSchedule(), accumulation);
            }
        } else {
            this.model = new GptModel(cfg.model(), GptModel.balancedPartition(cfg.model(), overlapStages));
            this.stageExecutor = null;
        }
        this.params = model.newFlatBuffer();
        this.grads = model.newFlatBuffer();
        DataParallelSync dp = run.gradientSync() instanceof DataParallelSync d ? d : null;
        this.zero = dp != null && cfg.optimizer().shardState()
                ? new ZeroOneSharding(dp.group(), model.layout().size(), model.dataType()) : null;
        this.adamw = zero == null ? new AdamW(model.layout(), cfg.optimizer(), model.dataType())
                : new AdamW(model.layout(), cfg.optimizer(), model.dataType(), zero.from(), zero.to());
        this.schedule = LrSchedule.of(cfg.optimizer(), cfg.schedule(), totalSteps, run.dataParallelSize());
        this.evaluator = valData == null ? null
                : new Evaluator(model, valData, cfg.training().evalSequences(), cfg.microBatch(run.dataParallelSize()));
        this.buckets = dp != null && zero == null ? dp.useBuckets(stageRanges(model),
                model.layout().size(), GradientBuckets.elementsPerBucket(cfg.parallel().dpBucketMb(),
                        model.dataType().width())) : null;
        model.initParams(params, cfg.training().seed());
        // Every rank initialises from the same seed; the broadcast makes "replicas start equal" a fact, not a hope.
        run.gradientSync().broadcastFromRank0(params, "initial parameters");
        model.setParams(params);
    }

    private void checkPipelineSetup(int stages, int overlapStages) {
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
        if (overlapStages > 1) {
            throw new ConfigException(null, -1, "parallel.dp.overlap_segments", "parallel.dp.overlap_segments splits a"
                    + " whole model inside one process; with parallel.pipeline.stages > 1 leave it at 1");
        }
    }

    private static long[][] stageRanges(GptModel model) {
        long[][] ranges = new long[model.numStages()][];
        for (int s = 0; s < ranges.length; s++) {
            ranges[s] = model.layout().stageRange(s);
        }
        return ranges;
    }

    private void report(String split, String path, TokenDataset ds) {
        if (!run.isLogger()) {
            return;
        }
        out.printf(Locale.ROOT, "data %s: %s: %,d documents, %,d tokens, %,d samples of %d+1 tokens%n", split, path,
                ds.numDocuments(), ds.numTokens(), ds.numSamples(), cfg.model().seqLen());
        if (ds.badRecords() != null && ds.badRecords().count() > 0) {
            out.println("data " + split + ": " + ds.badRecords());
        }
    }

    public GptModel model() {
        return model;
    }

    public INDArray params() {
        return params;
    }

    public long step() {
        return step;
    }

    public long totalSteps() {
        return totalSteps;
    }

    public int accumulationSteps() {
        return accumulation;
    }

    public long parameterCount() {
        return model.layout().size();
    }

    /** Restores parameters, optimizer state and data position from a checkpoint (a run dir, checkpoints dir or step dir). */
    public void resumeFrom(Path checkpoint) {
        Checkpoint ck = Checkpoint.load(checkpoint);
        ck.readParams(model.layout(), params);
        if (!ck.hasOptimizerState()) {
            throw new TrainingException("checkpoint " + ck.directory() + " has no optimizer state; it cannot be resumed "
                    + "exactly (use it with generate or eval, or start a new run from scratch)");
        }
        if (zero == null) {
            ck.readOptimizer(model.layout(), adamw.m(), adamw.v());
        } else {
            ck.readOptimizerShard(model.layout(), zero.from(), zero.to(), adamw.m(), adamw.v());
        }
        adamw.setStepCount(ck.adamStep());
        step = ck.step();
        Object seen = ck.extra().get("tokens_seen");
        tokensSeen = seen instanceof Number n ? n.longValue() : step * (long) cfg.training().globalBatch() * cfg.model().seqLen();
        synchronizeResumedState(ck.directory());
        model.setParams(params);
        if (run.isLogger()) {
            out.printf(Locale.ROOT, "resumed from %s at step %d%n", ck.directory(), step);
        }
    }

    /**
     * Data parallelism: every rank read the checkpoint itself; rank 0's parameters and AdamW moments are then
     * broadcast (as DDP and Horovod do) and the counters compared, so a rank that read another checkpoint fails
     * here instead of silently training a different model.
     */
    private void synchronizeResumedState(Path checkpointDir) {
        if (run.dataParallelSize() == 1) {
            return;
        }
        GradientSync sync = run.gradientSync();
        double[] mine = {step, adamw.stepCount(), tokensSeen};
        INDArray counters = org.nd4j.linalg.factory.Nd4j.createFromArray(mine.clone());
        sync.broadcastFromRank0(counters, "resume counters");
        double[] rank0 = counters.toDoubleVector();
        if (!java.util.Arrays.equals(mine, rank0)) {
            throw new TrainingException(String.format(Locale.ROOT, "rank %d resumed from %s at step %d (AdamW step %d,"
                            + " %d tokens) but rank 0 at step %d (AdamW step %d, %d tokens): all ranks must resume from the"
                            + " same checkpoint; put output.dir on a file system every node sees, or pass the same --resume",
                    run.rank(), checkpointDir, step, adamw.stepCount(), tokensSeen, (long) rank0[0], (long) rank0[1],
                    (long) rank0[2]));
        }
        sync.broadcastFromRank0(params, "resumed parameters");
        if (zero == null) {
            // With ZeRO-1 each rank read its own shard of the moments: there is nothing common to broadcast.
            sync.broadcastFromRank0(adamw.m(), "resumed AdamW m");
            sync.broadcastFromRank0(adamw.v(), "resumed AdamW v");
        }
    }

    /** Trains until totalSteps; returns the final evaluation (NaN if there is no validation set). */
    public double train() {
        if (run.isLogger()) {
            out.printf(Locale.ROOT, "model: %,d parameters, %d stage(s); %d micro-batch(es) of %d per step x %d rank(s)"
                            + " = global batch %d (%,d tokens); %d steps (%d per epoch, %d samples dropped per epoch)%n",
                    parameterCount(), model.numStages(), accumulation, cfg.microBatch(run.dataParallelSize()),
                    run.dataParallelSize(), cfg.training().globalBatch(),
                    (long) cfg.training().globalBatch() * cfg.model().seqLen(), totalSteps, loader.stepsPerEpoch(),
                    loader.droppedPerEpoch());
        }
        double lastEval = Double.NaN;
        try (RunMetrics metrics = RunMetrics.start(cfg, run, parameterCount())) {
            metrics.setClockOffsetMs(run.gradientSync().clockOffsetToRank0Ms());
            tracer = metrics.tracer();
            if (run.isLogger()) {
                out.println(metrics.describe());
            }
            while (step < totalSteps) {
                StepStats s = trainStep();
                metrics.step(s);
                boolean last = step == totalSteps;
                if (run.isLogger() && (step % Math.max(1, cfg.training().logInterval()) == 0 || last || step == 1)) {
                    out.printf(Locale.ROOT, "step %5d/%d | loss %.4f | lr %.3e | grad norm %.4f | %,.0f tok/s | %.0f ms/step%s%n",
                            s.step() + 1, totalSteps, s.loss(), s.lr(), s.gradNorm(), s.tokensPerSecond(), s.stepMs(),
                            s.skipped() ? " | SKIPPED (non-finite)" : "");
                }
                int evalEvery = cfg.training().evalInterval();
                if (evaluator != null && ((evalEvery > 0 && step % evalEvery == 0) || last)) {
                    lastEval = evaluate();
                }
                int ckEvery = cfg.training().checkpointInterval();
                if ((ckEvery > 0 && step % ckEvery == 0) || last) {
                    saveCheckpoint();
                }
            }
            writeDataParallelSummary(lastEval);
        } finally {
            tracer = Tracer.NOOP;
        }
        return lastEval;
    }

    /** One optimizer step; advances {@link #step()}. */
    public StepStats trainStep() {
        if (stageExecutor != null) {
            return pipelineStep();
        }
        long t0 = System.nanoTime();
        double lr = schedule.lr(step);
        grads.assign(0);
        long waitBefore = loader.dataWaitNanos();
        long computeNanos = 0;
        double lossSum = 0;
        model.phaseClock().reset();
        for (int j = 0; j < accumulation; j++) {
            long d0 = System.nanoTime();
            MicroBatch mb = loader.microBatch(step, j);
            long c0 = System.nanoTime();
            tracer.span("data_wait", "data", d0, c0);
            countSamples(step, mb.sampleIndices());
            // With bucketed data parallelism, on the step's last micro-batch each stage's buckets start their
            // AllReduce as soon as that stage's gradients are final, overlapping the earlier stages' backward.
            boolean launch = buckets != null && j == accumulation - 1;
            lossSum += model.forwardBackward(mb.windows(), mb.sampleIndices(), step, cfg.training().seed(), grads,
                    stage -> {
                        if (launch) {
                            buckets.launchStage(stage, grads, accumulation, tracer);
                        }
                    });
            long c1 = System.nanoTime();
            tracer.span("forward_backward", "compute", c0, c1);
            computeNanos += c1 - c0;
        }
        long dataWait = loader.dataWaitNanos() - waitBefore;
        long s0 = System.nanoTime();
        // Mean over micro-batches (and ranks): the gradient of the global batch's mean loss.
        double loss;
        if (zero != null) {
            zero.reduceScatterGradients(grads, accumulation);
            loss = ((DataParallelSync) run.gradientSync()).averageLoss(lossSum / accumulation);
        } else if (buckets == null) {
            loss = run.gradientSync().averageLossAndGradients(lossSum / accumulation, grads, accumulation);
        } else {
            // Exposed communication: from the end of the backward until the last bucket and the loss are averaged.
            buckets.awaitAll();
            loss = ((DataParallelSync) run.gradientSync()).averageLoss(lossSum / accumulation);
        }
        long o0 = System.nanoTime();
        if (run.dataParallelSize() > 1) {
            tracer.span("gradient_allreduce", "comm", s0, o0);
        }
        // One pass for the norm; only a non-finite norm pays for the pass that names the offending tensor.
        double norm = zero != null ? zero.globalNorm(grads) : GradClipper.globalNorm(grads);
        boolean skipped = !updateOrSkip(loss, norm, lr, () -> zero == null
                ? GradClipper.firstNonFinite(model.layout(), grads)
                : GradClipper.firstNonFinite(model.layout(), grads, zero.from(), zero.to()), "another rank's ZeRO-1 shard");
        long o1 = System.nanoTime();
        // One process has no communication: its division by the micro-batch count is optimizer work.
        boolean communicated = run.dataParallelSize() > 1;
        long commNanos = communicated ? o0 - s0 : 0;
        long optimizerNanos = o1 - (communicated ? o0 : s0);
        tracer.span("optimizer", "optimizer", o0, o1);
        tracer.span("step " + (step + 1), "step", t0, o1);
        long tokens = (long) cfg.training().globalBatch() * cfg.model().seqLen();
        tokensSeen += tokens;
        StepStats s = new StepStats(step, loss, lr, norm, tokens, (System.nanoTime() - t0) / 1e6, dataWait / 1e6,
                computeNanos / 1e6, optimizerNanos / 1e6, skipped, model.phaseClock().forwardMs(),
                model.phaseClock().backwardMs(), commNanos / 1e6);
        step++;
        stepsRun++;
        return s;
    }


    /**
     * One optimizer step of this rank's pipeline stage: the step's M micro-batches run through the stage by the
     * schedule's program; then the stage's gradients are averaged over its D replicas, the tied wte gradient is
     * summed between stage 0 and the last stage, and one world AllReduce gives every rank the loss (known only to
     * the last stage) and the squared gradient norm (each stage's share, the wte replica not counted twice), so
     * all stages clip by the same global norm and take the same decision on non-finite values.
     */
    private StepStats pipelineStep() {
        long t0 = System.nanoTime();
        double lr = schedule.lr(step);
        grads.assign(0);
        model.phaseClock().reset();
        long waitBefore = loader.dataWaitNanos();
        List<io.dtrain.data.loader.MicroBatch> microbatches = new ArrayList<>(accumulation);
        for (int j = 0; j < accumulation; j++) {
            MicroBatch mb = loader.microBatch(step, j);
            countSamples(step, mb.sampleIndices());
            microbatches.add(new io.dtrain.data.loader.MicroBatch(mb.windows(), mb.sampleIndices()));
        }
        long c0 = System.nanoTime();
        tracer.span("data_wait", "data", t0, c0);
        long dataWait = loader.dataWaitNanos() - waitBefore;
        StageExecutor.StageResult r = stageExecutor.trainStep(microbatches, step, cfg.training().seed(), grads);
        long s0 = System.nanoTime();
        tracer.span("pipeline " + cfg.parallel().pipelineSchedule(), "compute", c0, s0);
        if (pipe.dataParallel() != null) {
            // only the gradients: the loss is known to the last stage alone and travels in the world sum below
            ((DataParallelSync) run.gradientSync()).averageGradients(grads);
        }
        boolean tiedReplica = GptNames.hasTiedReplica(cfg.model(), pipe.stages(), pipe.stage());
        if (pipe.tiedEmbedding() != null) {
            io.dtrain.model.ParamSpec wte = model.layout().spec(GptNames.WTE);
            pipe.sumTiedEmbeddingGradient(grads.get(NDArrayIndex.interval(wte.offset(), wte.end())));
        }
        long owned = tiedReplica ? model.layout().spec(GptNames.WTE).offset() : grads.length();
        double stageNorm = GradClipper.globalNorm(grads.get(NDArrayIndex.interval(0, owned)));
        double[] totals = {pipe.isLastStage() ? r.lossSum() / r.losses() / pipe.replicas() : 0,
                pipe.replica() == 0 ? stageNorm * stageNorm : 0};
        pipe.sumOverWorld(totals, "loss and squared gradient norm");
        double loss = totals[0];
        double norm = Math.sqrt(totals[1]);
        long o0 = System.nanoTime();
        tracer.span("gradient_sync", "comm", s0, o0);
        boolean skipped = !updateOrSkip(loss, norm, lr, () -> GradClipper.firstNonFinite(model.layout(), grads),
                "another pipeline stage");
        long o1 = System.nanoTime();
        tracer.span("optimizer", "optimizer", o0, o1);
        tracer.span("step " + (step + 1), "step", t0, o1);
        long tokens = (long) cfg.training().globalBatch() * cfg.model().seqLen();
        tokensSeen += tokens;
        peakLiveActivations = Math.max(peakLiveActivations, r.peakLiveActivations());
        StepStats s = new StepStats(step, loss, lr, norm, tokens, (System.nanoTime() - t0) / 1e6, dataWait / 1e6,
                (r.totalNanos() - r.idleNanos()) / 1e6, (o1 - o0) / 1e6, skipped, model.phaseClock().forwardMs(),
                model.phaseClock().backwardMs(), (o0 - s0) / 1e6, r.idleNanos() / 1e6);
        step++;
        stepsRun++;
        return s;
    }

    /**
     * AdamW on the clipped gradients and the new parameters into the graphs; or, when the loss or the gradient norm
     * is not finite, stop or skip the update as training.on_non_finite says, naming the first offending tensor this
     * rank holds ({@code culprit}) or else {@code elsewhere}. Returns true when the update was applied.
     */
    private boolean updateOrSkip(double loss, double norm, double lr,
                                 java.util.function.Supplier<Optional<GradClipper.NonFinite>> culprit, String elsewhere) {
        if (Double.isFinite(loss) && Double.isFinite(norm)) {
            adamw.step(params, grads, lr, GradClipper.clipFactor(norm, cfg.optimizer().gradClip()));
            if (zero != null) {
                zero.allGatherParameters(params);
            }
            model.setParams(params);
            return true;
        }
        Optional<GradClipper.NonFinite> bad = culprit.get();
        String what = bad.isPresent() ? bad.get().message() : !Double.isFinite(loss)
                ? "non-finite loss (" + loss + ")"
                : "non-finite gradient norm (" + norm + ") from " + elsewhere + " (see its log)";
        if (!"skip".equals(cfg.training().onNonFinite())) {
            throw new TrainingException("step " + (step + 1) + ": " + what
                    + "; stopping (set training.on_non_finite=skip to skip such steps, or lower optimizer.lr)");
        }
        if (run.isLogger()) {
            out.printf(Locale.ROOT, "step %d: %s; update skipped (training.on_non_finite=skip)%n", step + 1, what);
        }
        return false;
    }

    /** Mean validation loss over the fixed evaluation batches; prints loss and perplexity. */
    public double evaluate() {
        if (evaluator == null) {
            return Double.NaN;
        }
        double loss = stageExecutor == null
                ? evaluator.meanLoss(run.dataParallelRank(), run.dataParallelSize(), run.gradientSync())
                : evaluator.meanLoss(run.dataParallelRank(), run.dataParallelSize(), stageExecutor,
                        totals -> pipe.sumOverWorld(totals, "evaluation totals"));
        if (run.isLogger()) {
            out.printf(Locale.ROOT, "eval step %d | val loss %.4f | val ppl %.3f | %d batches%n", step, loss,
                    Math.exp(loss), evaluator.batches());
        }
        return loss;
    }

    /**
     * Writes the checkpoint of the current step: named tensors + manifest, the same files whatever the layout of
     * ranks. One process or plain data parallelism: rank 0 writes it all. ZeRO-1: rank 0 writes the parameters and
     * every rank its shard of the AdamW moments. Pipeline: replica 0 of each stage writes that stage's tensors (the
     * last stage's wte replica is stage 0's wte). With several writers rank 0 checks the parts cover every tensor
     * exactly once and commits the manifest last ({@link ShardedCheckpointWriter}).
     */
    public Path saveCheckpoint() {
        Map<String, Object> extra = new LinkedHashMap<>();
        extra.put("tokens_seen", tokensSeen);
        extra.put("rng", Map.of("init_seed", cfg.training().seed(), "dropout_seed", cfg.training().seed(),
                "data_seed", cfg.data().seed(), "kind", "counter-based, keyed by (seed, step, sample index)"));
        extra.put("loader", Map.of("next_step", step, "global_batch", cfg.training().globalBatch(),
                "steps_per_epoch", loader.stepsPerEpoch(), "epoch", loader.epochOf(step)));
        extra.put("tokenizer", tokenizer.identity());
        extra.put("config", ConfigLoader.toMap(cfg));
        extra.put("config_yaml", ConfigLoader.toYaml(cfg));
        Path checkpoints = runDir.resolve("checkpoints");
        try {
            Path dir;
            if (zero == null && pipe == null) {
                if (!run.isCheckpointWriter()) {
                    return null;
                }
                dir = CheckpointWriter.write(checkpoints, step, model.layout(), params, adamw.m(), adamw.v(),
                        adamw.stepCount(), extra, cfg.output().keepCheckpoints());
            } else {
                dir = shardedWriter().write(step, true, adamw.stepCount(), extra, checkpointPieces());
            }
            if (run.isLogger()) {
                out.println("checkpoint " + dir);
            }
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException("writing the checkpoint of step " + step + " under " + runDir, e);
        }
    }

    private ShardedCheckpointWriter shardedWriter() {
        if (shardedWriter == null) {
            ProcessGroup world = pipe != null ? pipe.world() : ((DataParallelSync) run.gradientSync()).group();
            ParamLayout global = pipe != null ? GptNames.layout(cfg.model(), model.blocksPerStage()) : model.layout();
            shardedWriter = new ShardedCheckpointWriter(runDir.resolve("checkpoints"), global, model.dataType(),
                    cfg.output().keepCheckpoints(), world.rank(), world.size(), what -> world.barrierAsync(what).await());
        }
        return shardedWriter;
    }

    /** The tensor ranges this rank writes into a checkpoint shared by several writers. */
    private List<ShardedCheckpointWriter.Piece> checkpointPieces() {
        List<ShardedCheckpointWriter.Piece> mine = new ArrayList<>();
        ParamLayout layout = model.layout();
        if (pipe != null) {
            if (pipe.replica() == 0) {
                List<String> names = new ArrayList<>();
                for (io.dtrain.model.ParamSpec s : layout.specs()) {
                    if (!(pipe.isLastStage() && pipe.stage() > 0 && GptNames.WTE.equals(s.name()))) {
                        names.add(s.name());
                    }
                }
                mine.addAll(ShardedCheckpointWriter.wholeTensors(ShardedCheckpointWriter.Part.PARAMS, layout, params, names));
                mine.addAll(ShardedCheckpointWriter.wholeTensors(ShardedCheckpointWriter.Part.ADAM_M, layout, adamw.m(), names));
                mine.addAll(ShardedCheckpointWriter.wholeTensors(ShardedCheckpointWriter.Part.ADAM_V, layout, adamw.v(), names));
            }
            return mine;
        }
        if (run.isCheckpointWriter()) {
            List<String> all = layout.specs().stream().map(io.dtrain.model.ParamSpec::name).toList();
            mine.addAll(ShardedCheckpointWriter.wholeTensors(ShardedCheckpointWriter.Part.PARAMS, layout, params, all));
        }
        mine.addAll(ShardedCheckpointWriter.shardOf(ShardedCheckpointWriter.Part.ADAM_M, layout, adamw.m(), zero.from(), zero.to()));
        mine.addAll(ShardedCheckpointWriter.shardOf(ShardedCheckpointWriter.Part.ADAM_V, layout, adamw.v(), zero.from(), zero.to()));
        return mine;
    }

    /** Order-independent digest of the (step, sample) pairs this rank trained on: the ranks' digests add up. */
    private void countSamples(long atStep, long[] sampleIndices) {
        for (long sample : sampleIndices) {
            samplesServed++;
            sampleDigest += mix(mix(atStep) + sample);
        }
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /** Samples this rank trained on since it started (resumed runs count from the resume). */
    public long samplesServed() {
        return samplesServed;
    }

    /** Sum (mod 2^64) of a hash of each (step, sample index) this rank trained on. */
    public long sampleDigest() {
        return sampleDigest;
    }

    /**
     * {@code metrics/dp-rank<r>.json}: what this rank's loader served and what its gradient AllReduce sent, so
     * that "each rank trained on its 1/N of the global batch" can be checked from the outside.
     */
    private void writeDataParallelSummary(double lastEval) {
        Path file = runDir.resolve("metrics").resolve("dp-rank" + run.rank() + ".json");
        String json = String.format(Locale.ROOT, "{\"rank\":%d,\"data_parallel_size\":%d,\"steps\":%d,"
                        + "\"samples\":%d,\"sample_digest\":\"%016x\",\"gradient_buffer_bytes\":%d,"
                        + "\"gradient_allreduce_bytes_sent\":%d,\"optimizer_state_elements\":%d,"
                        + "\"last_val_loss\":%s%s}%n", run.rank(),
                run.dataParallelSize(), stepsRun, samplesServed, sampleDigest,
                grads.length() * grads.dataType().width(),
                run.gradientSync().gradientBytesSent() + (zero == null ? 0 : zero.gradientBytesSent()),
                adamw.m().length(),
                Double.isFinite(lastEval) ? Double.toString(lastEval) : "null",
                pipe == null ? "" : String.format(Locale.ROOT, ",\"pipeline_stage\":%d,\"pipeline_stages\":%d,"
                                + "\"stage_parameters\":%d,\"pipeline_bytes_sent\":%d,\"pipeline_bytes_received\":%d,"
                                + "\"peak_live_activations\":%d", pipe.stage(), pipe.stages(), model.layout().size(),
                        pipe.transport().bytesSent(), pipe.transport().bytesReceived(), peakLiveActivations));
        try {
            java.nio.file.Files.createDirectories(file.getParent());
            Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
            java.nio.file.Files.writeString(tmp, json);
            java.nio.file.Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                    java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new UncheckedIOException("writing " + file, e);
        }
    }

    @Override
    public void close() {
        loader.close();
        model.close();
        closeQuietly(trainData);
        closeQuietly(valData);
    }

    /** Memory-mapped Arrow shards hold their mappings until closed; in-memory datasets hold nothing. */
    private static void closeQuietly(TokenDataset ds) {
        if (ds instanceof AutoCloseable c) {
            try {
                c.close();
            } catch (Exception e) {
                throw new IllegalStateException("closing dataset " + ds, e);
            }
        }
    }
}
