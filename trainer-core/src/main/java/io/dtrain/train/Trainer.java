package io.dtrain.train;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.checkpoint.CheckpointSpace;
import io.dtrain.common.AtomicFiles;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.data.loader.TokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.metrics.GpuDevices;
import io.dtrain.metrics.RunMetrics;
import io.dtrain.metrics.Tracer;
import io.dtrain.model.GptModel;
import io.dtrain.model.GptNames;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The training loop of one rank: load the data, then step, log, evaluate and checkpoint until
 * {@code training.steps}, recording every step's metrics. What a step does in this run's parallel layout (one
 * process, data parallelism, ZeRO-1, pipeline) is the {@link TrainStep} built once from the {@link RunContext}.
 */
public final class Trainer implements AutoCloseable {
    private final RunConfig cfg;
    private final RunContext context;
    private final PrintStream out;
    private long stoppedAt = -1;
    private long lastCheckpointStep = -1;
    private final Path runDir;
    /** "cpu" or "cuda", and "cpu" or this rank's GPU (name, memory, compute capability): logged and in step records. */
    private final String backend;
    private final String device;
    private final long totalSteps;
    private final Tokenizer tokenizer;
    private final TokenDataset trainData;
    private final TokenDataset valData;
    private final BatchLoader loader;
    private final TrainStep trainStep;
    /** Null without a validation set. */
    private final Evaluator evaluator;
    private final MemoryLimits memoryLimits;
    private final MemoryPlan memoryPlan;

    /**
     * Checks that the run fits in memory (refusing it up front otherwise), loads the data and builds the model and
     * the step.
     */
    public Trainer(RunConfig cfg, RunContext context, PrintStream out) {
        this.cfg = cfg;
        this.context = context;
        this.out = out;
        this.runDir = Path.of(cfg.output().dir());
        this.totalSteps = cfg.totalSteps();
        // Before anything large is read or built: the model alone must fit; the data is added once it is loaded.
        this.memoryLimits = MemoryLimits.current();
        // the CUDA backend: this worker's one GPU (CUDA_VISIBLE_DEVICES from dtrain launch), refused if unsupported
        this.backend = GpuDevices.cudaBackend() ? "cuda" : "cpu";
        this.device = GpuDevices.deviceOfThisProcess("cuda".equals(backend), System.getenv());
        out.println("cuda".equals(backend) ? "backend cuda: rank " + context.rank() + " on " + device : "backend cpu");
        MemoryPlan withoutData = MemoryPlan.of(cfg, context, 0);
        withoutData.check(memoryLimits);
        this.tokenizer = TrainTokenizer.forConfig(cfg);
        int seqLen = cfg.model().seqLen();
        BadRecordPolicy policy = BadRecordPolicy.parse(cfg.data().onBadRecord());
        try {
            this.trainData = TokenDatasets.load(cfg.data().train(), tokenizer, seqLen, policy);
            report("train", cfg.data().train(), trainData);
            if (cfg.data().val() != null && !cfg.data().val().isBlank()) {
                this.valData = TokenDatasets.load(cfg.data().val(), tokenizer, seqLen, policy);
                report("val", cfg.data().val(), valData);
            } else {
                this.valData = null;
            }
        } catch (OutOfMemoryError e) {
            throw withoutData.outOfMemory(e, "while reading the data", memoryLimits);
        }
        this.memoryPlan = MemoryPlan.of(cfg, context, trainData.heapBytes() + (valData == null ? 0 : valData.heapBytes()));
        if (context.isLogger()) {
            out.println(memoryPlan.describe(memoryLimits));
        }
        memoryPlan.check(memoryLimits);
        this.loader = new BatchLoader(trainData, cfg.training().globalBatch(), cfg.microBatch(context.dataParallelSize()),
                context.dataParallelRank(), context.dataParallelSize(), cfg.data().seed());
        try {
            this.trainStep = TrainStep.create(cfg, context, loader, out);
        } catch (OutOfMemoryError | RuntimeException e) {
            loader.close();
            if (MemoryPlan.isOutOfMemory(e)) {
                throw memoryPlan.outOfMemory(e, "while building the model", memoryLimits);
            }
            throw e;
        }
        this.evaluator = valData == null ? null
                : new Evaluator(trainStep.model(), valData, cfg.training().evalSequences(),
                        cfg.microBatch(context.dataParallelSize()));
    }

    /** What this rank was estimated to allocate, checked against its limits before the model was built. */
    public MemoryPlan memoryPlan() {
        return memoryPlan;
    }

    private void report(String split, String path, TokenDataset ds) {
        if (!context.isLogger()) {
            return;
        }
        out.printf(Locale.ROOT, "data %s: %s: %,d documents, %,d tokens, %,d samples of %d+1 tokens%n", split, path,
                ds.numDocuments(), ds.numTokens(), ds.numSamples(), cfg.model().seqLen());
        if (ds.badRecords() != null && ds.badRecords().count() > 0) {
            out.println("data " + split + ": " + ds.badRecords());
        }
    }

    public GptModel model() {
        return trainStep.model();
    }

    public INDArray params() {
        return trainStep.params();
    }

    public long step() {
        return trainStep.step();
    }

    public int accumulationSteps() {
        return cfg.accumulationSteps(context.dataParallelSize());
    }

    /** Restores parameters, optimizer state and data position from a checkpoint (a run dir, checkpoints dir or step dir). */
    public void resumeFrom(Path checkpoint) {
        Checkpoint ck = Checkpoint.load(checkpoint);
        trainStep.resume(ck);
        if (context.isLogger()) {
            out.printf(Locale.ROOT, "resumed from %s at step %d%n", ck.directory(), trainStep.step());
        }
    }

    /**
     * Trains until training.steps; returns the final evaluation (NaN if there is no validation set). Running out of
     * memory all the same (the estimate is short, or something else grew) is reported like a refusal, with the estimate.
     */
    public double train() {
        try {
            return trainSteps();
        } catch (OutOfMemoryError | RuntimeException e) {
            if (MemoryPlan.isOutOfMemory(e) && !(e instanceof io.dtrain.common.UserFacingException)) {
                throw memoryPlan.outOfMemory(e, "at step " + (trainStep.step() + 1), memoryLimits);
            }
            throw e;
        }
    }

    private double trainSteps() {
        GptModel model = trainStep.model();
        if (context.isLogger()) {
            out.printf(Locale.ROOT, "model: %,d parameters, %d stage(s); %d micro-batch(es) of %d per step x %d rank(s)"
                            + " = global batch %d (%,d tokens); %d steps (%d per epoch, %d samples dropped per epoch)%n",
                    model.layout().size(), model.numStages(), accumulationSteps(), cfg.microBatch(context.dataParallelSize()),
                    context.dataParallelSize(), cfg.training().globalBatch(),
                    (long) cfg.training().globalBatch() * cfg.model().seqLen(), totalSteps, loader.stepsPerEpoch(),
                    loader.droppedPerEpoch());
        }
        double lastEval = Double.NaN;
        try (RunMetrics metrics = RunMetrics.start(cfg, context, model.layout().size())) {
            metrics.setClockOffsetMs(context.clockOffsetToRank0Ms());
            metrics.setDevice(backend, device);
            trainStep.setTracer(metrics.tracer());
            if (context.isLogger()) {
                out.println(metrics.describe());
            }
            warnIfCheckpointsWillNotFit();
            while (trainStep.step() < totalSteps) {
                if (stopRequested()) {
                    stoppedAt = trainStep.step();
                    if (lastCheckpointStep != stoppedAt) {
                        saveCheckpoint();
                    }
                    if (context.isLogger()) {
                        out.printf(Locale.ROOT, "stop: checkpoint of step %d written on %s; exit status %d: run the same"
                                        + " command again to continue (--resume auto)%n", stoppedAt,
                                StopSignals.requestedBy() != null ? StopSignals.requestedBy() : "another rank's signal",
                                StopSignals.EXIT_REQUEUE);
                    }
                    break;
                }
                StepStats s = trainStep.run();
                metrics.step(s);
                long done = trainStep.step();
                boolean last = done == totalSteps;
                if (context.isLogger() && (done % Math.max(1, cfg.training().logInterval()) == 0 || last || done == 1)) {
                    out.printf(Locale.ROOT, "step %5d/%d | loss %.4f | lr %.3e | grad norm %.4f | %,.0f tok/s | %.0f ms/step%s%n",
                            s.step() + 1, totalSteps, s.loss(), s.lr(), s.gradNorm(), s.tokensPerSecond(), s.stepMs(),
                            s.skipped() ? " | SKIPPED (non-finite)" : "");
                }
                int evalEvery = cfg.training().evalInterval();
                if (evaluator != null && ((evalEvery > 0 && done % evalEvery == 0) || last)) {
                    lastEval = evaluate();
                    metrics.eval(done, lastEval, evaluator.sequences());
                }
                int ckEvery = cfg.training().checkpointInterval();
                if ((ckEvery > 0 && done % ckEvery == 0) || last) {
                    saveCheckpoint();
                }
            }
            writeSummary(lastEval);
        } finally {
            trainStep.setTracer(Tracer.NOOP);
        }
        return lastEval;
    }

    /**
     * Whether any rank got a stop signal: every rank asks at the same step boundary, so they all stop at the same
     * step and write one checkpoint together. One process: just its own flag; a job: a sum over the world.
     */
    private boolean stopRequested() {
        double mine = StopSignals.requestedBy() != null ? 1 : 0;
        if (context.world() == null) {
            return mine > 0;
        }
        double[] any = {mine};
        RankSums.sum(context.world(), any, "stop requests");
        return any[0] > 0;
    }

    /** The step at which a stop signal ended {@link #train()}, or -1 when it ran to the end. */
    public long stoppedAt() {
        return stoppedAt;
    }

    /** One optimizer step; advances {@link #step()}. */
    public StepStats trainStep() {
        return trainStep.run();
    }

    /** Mean validation loss over the fixed evaluation batches (NaN without a validation set); prints it. */
    public double evaluate() {
        if (evaluator == null) {
            return Double.NaN;
        }
        double loss = trainStep.evaluate(evaluator);
        if (context.isLogger()) {
            out.printf(Locale.ROOT, "eval step %d | val loss %.4f | val ppl %.3f | %d batches%n", trainStep.step(), loss,
                    Math.exp(loss), evaluator.batches());
        }
        return loss;
    }

    /**
     * Writes the checkpoint of the current step: named tensors + manifest, the same files whatever the layout of
     * ranks (each rank writes its share, see {@link TrainStep#saveCheckpoint}); returns its directory, or null on a
     * rank that writes none.
     */
    public Path saveCheckpoint() {
        Map<String, Object> extra = new LinkedHashMap<>();
        extra.put("rng", Map.of("init_seed", cfg.training().seed(), "dropout_seed", cfg.training().seed(),
                "data_seed", cfg.data().seed(), "kind", "counter-based, keyed by (seed, step, sample index)"));
        extra.put("loader", Map.of("next_step", trainStep.step(), "global_batch", cfg.training().globalBatch(),
                "steps_per_epoch", loader.stepsPerEpoch(), "epoch", loader.epochOf(trainStep.step())));
        extra.put("tokenizer", tokenizer.identity());
        extra.put("config", ConfigLoader.toMap(cfg));
        extra.put("config_yaml", ConfigLoader.toYaml(cfg));
        Path checkpoints = runDir.resolve("checkpoints");
        long needed = checkpointBytes();
        if (context.isLogger()) {
            String warning = CheckpointSpace.warning(checkpoints, "the checkpoint of step " + trainStep.step(), needed);
            if (warning != null) {
                out.println(warning);
            }
        }
        try {
            Path dir = trainStep.saveCheckpoint(extra);
            lastCheckpointStep = trainStep.step();
            if (context.isLogger()) {
                out.println("checkpoint " + dir);
            }
            return dir;
        } catch (IOException | UncheckedIOException e) {
            throw CheckpointSpace.writeFailed(checkpoints, trainStep.step(), needed, e);
        }
    }

    /** Bytes of one checkpoint of this run: every parameter and its two AdamW moments, plus the manifest. */
    private long checkpointBytes() {
        long parameters = GptNames.layout(cfg.model(), new int[] {cfg.model().nLayer()}).size();
        return CheckpointSpace.bytesNeeded(parameters, trainStep.model().dataType(), true);
    }

    /** Before the first step: warns when output.dir's disk cannot hold even one checkpoint, instead of hours later. */
    private void warnIfCheckpointsWillNotFit() {
        if (context.isLogger() && trainStep.step() < totalSteps) {
            String warning = CheckpointSpace.warning(runDir.resolve("checkpoints"), "a checkpoint of this run",
                    checkpointBytes());
            if (warning != null) {
                out.println(warning);
            }
        }
    }

    /** {@code metrics/dp-rank<r>.json}: what this rank trained on and sent (see {@link TrainStep#summaryJson}). */
    private void writeSummary(double lastEval) {
        Path file = runDir.resolve("metrics").resolve("dp-rank" + context.rank() + ".json");
        try {
            AtomicFiles.writeString(file, trainStep.summaryJson(lastEval));
        } catch (IOException e) {
            throw new UncheckedIOException("writing " + file, e);
        }
    }

    @Override
    public void close() {
        loader.close();
        trainStep.close();
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
