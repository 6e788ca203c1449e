package io.dtrain.train;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.checkpoint.CheckpointWriter;
import io.dtrain.config.ConfigException;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.data.loader.MicroBatch;
import io.dtrain.hf.HfImport;
import io.dtrain.metrics.Tracer;
import io.dtrain.model.GptModel;
import io.dtrain.optim.AdamW;
import io.dtrain.optim.GradClipper;
import io.dtrain.optim.LrSchedule;
import io.dtrain.train.dp.DataParallelGroup;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.function.IntConsumer;
import java.util.function.Supplier;

/**
 * What every layout's step shares: the flat parameter and gradient buffers, AdamW, the learning-rate schedule, the
 * loader, and the per-step bookkeeping (step, tokens, the samples this rank served and their digest, the
 * {@link StepStats} record, what a non-finite loss or norm does). A layout adds how gradients are synchronised and
 * overrides the hooks for its share of the checkpoint, its resume and its summary.
 *
 * <p>Per optimizer step: zero the flat gradients; for each micro-batch, forward + backward, adding into the flat
 * gradients; average over micro-batches (and ranks); check finiteness; clip the global norm; AdamW on the flat
 * buffers; copy the new parameters into the graphs. Everything that decides the numbers (initial weights, data
 * order, dropout masks) is a pure function of seeds and the step, so a resumed run repeats an uninterrupted one
 * exactly. The constructor initialises the parameters from {@code training.seed}; a layout's constructor then
 * makes its replicas agree on them and copies them into the model.
 */
public abstract class TrainStepBase implements TrainStep {
    /** Manifest entries of an fp16 run's checkpoint: the loss scaler's state. */
    static final String LOSS_SCALE = "loss_scale";
    static final String LOSS_SCALE_GOOD_STEPS = "loss_scale_good_steps";
    protected final RunConfig cfg;
    protected final RunContext context;
    protected final BatchLoader loader;
    protected final PrintStream out;
    protected final GptModel model;
    protected final INDArray params;
    protected final INDArray grads;
    protected final AdamW adamw;
    protected final LrSchedule schedule;
    /** Micro-batches per step on this rank. */
    protected final int accumulation;
    protected final Path checkpointsDir;
    protected Tracer tracer = Tracer.NOOP;
    /** fp16: the dynamic loss scale (fp32: a constant 1). */
    protected final LossScaler scaler;
    /** The loss scale of the running step's backward pass. */
    private double stepScale = 1.0;
    private long step;
    private long tokensSeen;
    private long stepsRun;
    private long samplesServed;
    private long sampleDigest;
    private long dataWaitAtStart;

    /** AdamW state for the whole layout. */
    protected TrainStepBase(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, GptModel model) {
        this(cfg, context, loader, out, model, 0, model.layout().size());
    }

    /** AdamW state for {@code [stateFrom, stateTo)} of the layout only (ZeRO-1). */
    protected TrainStepBase(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, GptModel model,
                            long stateFrom, long stateTo) {
        this(cfg, context, loader, out, model, stateFrom, stateTo, model.newFlatBuffer());
    }

    /** AdamW state for the whole layout; the gradients in {@code grads} (the layout's flat buffer, zero-filled). */
    protected TrainStepBase(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, GptModel model,
                            INDArray grads) {
        this(cfg, context, loader, out, model, 0, model.layout().size(), grads);
    }

    /** AdamW state for {@code [stateFrom, stateTo)} of the layout only; the gradients in {@code grads} (zero-filled). */
    protected TrainStepBase(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out, GptModel model,
                            long stateFrom, long stateTo, INDArray grads) {
        this.cfg = cfg;
        this.context = context;
        this.loader = loader;
        this.out = out;
        this.model = model;
        this.accumulation = cfg.accumulationSteps(context.dataParallelSize());
        this.params = model.newFlatBuffer();
        this.grads = grads;
        this.adamw = new AdamW(model.layout(), cfg.optimizer(), model.dataType(), stateFrom, stateTo);
        this.schedule = LrSchedule.of(cfg.optimizer(), cfg.schedule(), cfg.totalSteps(), context.dataParallelSize());
        this.checkpointsDir = Path.of(cfg.output().dir()).resolve("checkpoints");
        this.scaler = LossScaler.of(cfg.training());
        model.setHalfPrecision(cfg.training().fp16());
        model.initParams(params, cfg.training().seed());
        if (!cfg.model().initFrom().isEmpty()) {
            Path file = HfImport.load(cfg.model().initFrom(), cfg.model(), model.layout(), params);
            if (context.isLogger()) {
                out.println("model: weights from " + file + " (model.init_from)");
            }
        }
    }

    /**
     * The whole model in one process, split into {@code parallel.dp.overlap_segments} runs of blocks (data
     * parallelism starts a segment's gradient AllReduce as soon as its backward is done).
     */
    protected static GptModel wholeModel(RunConfig cfg) {
        int segments = cfg.parallel().dpOverlapSegments();
        if (segments > cfg.model().nLayer()) {
            throw new ConfigException(null, -1, "parallel.dp.overlap_segments", "parallel.dp.overlap_segments ("
                    + segments + ") exceeds model.n_layer (" + cfg.model().nLayer() + "): each overlap segment needs"
                    + " at least one block; use 1.." + cfg.model().nLayer());
        }
        return new GptModel(cfg.model(), GptModel.balancedPartition(cfg.model(), segments),
                cfg.training().recomputeBlocks());
    }

    @Override
    public GptModel model() {
        return model;
    }

    @Override
    public INDArray params() {
        return params;
    }

    @Override
    public long step() {
        return step;
    }

    @Override
    public void setTracer(Tracer tracer) {
        this.tracer = tracer;
    }

    /** Starts a step: zeroes the gradients and the phase clock; returns the start time (System.nanoTime). */
    protected final long beginStep() {
        long t0 = System.nanoTime();
        grads.assign(0);
        stepScale = scaler.scale();
        model.setLossScale(stepScale);
        model.phaseClock().reset();
        dataWaitAtStart = loader.dataWaitNanos();
        return t0;
    }

    /** Micro-batch {@code j} of this step from the loader, counted in the samples this rank served. */
    protected final MicroBatch microBatch(int j) {
        MicroBatch mb = loader.microBatch(step, j);
        for (long sample : mb.sampleIndices()) {
            samplesServed++;
            sampleDigest += mix(mix(step) + sample);
        }
        return mb;
    }

    /** The mean loss of a step's micro-batches and the time their forward and backward took. */
    protected record Pass(double meanLoss, long computeNanos) {
    }

    /**
     * Forward + backward of this step's micro-batches through the whole model, ADDING their gradients into
     * {@link #grads}; on the last micro-batch {@code gradientsFinal} gets each graph's index as soon as that graph's
     * gradients are complete (see {@link GptModel#forwardBackward}).
     */
    protected final Pass forwardBackward(IntConsumer gradientsFinal) {
        long computeNanos = 0;
        double lossSum = 0;
        for (int j = 0; j < accumulation; j++) {
            long d0 = System.nanoTime();
            MicroBatch mb = microBatch(j);
            long c0 = System.nanoTime();
            tracer.span("data_wait", "data", d0, c0);
            boolean last = j == accumulation - 1;
            lossSum += model.forwardBackward(mb.windows(), mb.sampleIndices(), step, cfg.training().seed(), grads,
                    graph -> {
                        if (last) {
                            gradientsFinal.accept(graph);
                        }
                    });
            long c1 = System.nanoTime();
            tracer.span("forward_backward", "compute", c0, c1);
            computeNanos += c1 - c0;
        }
        return new Pass(lossSum / accumulation, computeNanos);
    }

    /**
     * AdamW on the clipped gradients and the new parameters into the graphs; or, when the loss or the gradient norm
     * is not finite, stop or skip the update as training.on_non_finite says, naming the first offending tensor this
     * rank holds ({@code culprit}) or else where the norm came from ({@code normSource}). Returns true when the
     * update was applied.
     */
    protected final boolean updateOrSkip(double loss, double norm, double lr,
                                         Supplier<Optional<GradClipper.NonFinite>> culprit, String normSource) {
        if (Double.isFinite(loss) && Double.isFinite(norm)) {
            scaler.update(false, step + 1);
            // the gradients hold stepScale x dL/dw: unscaled in fp32 by AdamW's factor, clipped by the true norm
            double clip = GradClipper.clipFactor(norm / stepScale, cfg.optimizer().gradClip());
            applyUpdate(lr, clip / stepScale);
            model.setParams(params);
            return true;
        }
        if (scaler.enabled() && Double.isFinite(loss)) {
            // fp16 overflow: every rank sees it, since the norm is of the synchronised (or world-summed) gradients
            scaler.update(true, step + 1);
            if (context.isLogger()) {
                out.printf(Locale.ROOT, "step %d: fp16 gradients overflowed at loss scale %s; update skipped, loss scale"
                        + " now %s%n", step + 1, LossScaler.format(stepScale), LossScaler.format(scaler.scale()));
            }
            return false;
        }
        Optional<GradClipper.NonFinite> bad = culprit.get();
        String what = bad.isPresent() ? bad.get().message() : !Double.isFinite(loss)
                ? "non-finite loss (" + loss + ")"
                : "non-finite gradient norm (" + norm + ") " + normSource;
        if (!"skip".equals(cfg.training().onNonFinite())) {
            throw new TrainingException("step " + (step + 1) + ": " + what
                    + "; stopping (set training.on_non_finite=skip to skip such steps, or lower optimizer.lr)");
        }
        if (context.isLogger()) {
            out.printf(Locale.ROOT, "step %d: %s; update skipped (training.on_non_finite=skip)%n", step + 1, what);
        }
        return false;
    }

    /** AdamW on this rank's state range; ZeRO-1 then gathers the other ranks' updated shards. */
    protected void applyUpdate(double lr, double clipFactor) {
        adamw.step(params, grads, lr, clipFactor);
    }

    /**
     * The step's record (phases in nanoseconds; {@code bubbleMs} NaN without a pipeline); counts its tokens and
     * advances {@link #step()}.
     */
    protected final StepStats finish(long t0, double loss, double lr, double norm, boolean skipped, long computeNanos,
                                     long optimizerNanos, long commNanos, double bubbleMs) {
        long end = System.nanoTime();
        tracer.span("step " + (step + 1), "step", t0, end);
        long tokens = (long) cfg.training().globalBatch() * cfg.model().seqLen();
        tokensSeen += tokens;
        // the norm of dL/dw: the gradients held stepScale times it (a power of two: the division is exact)
        StepStats s = new StepStats(step, loss, lr, norm / stepScale, tokens, (end - t0) / 1e6,
                (loader.dataWaitNanos() - dataWaitAtStart) / 1e6, computeNanos / 1e6, optimizerNanos / 1e6, skipped,
                model.phaseClock().forwardMs(), model.phaseClock().backwardMs(), commNanos / 1e6, bubbleMs, stepScale);
        step++;
        stepsRun++;
        return s;
    }

    /**
     * The whole state, written by rank 0 alone (one process, data parallelism): the others hold the same. Layouts
     * that spread the state over ranks override this.
     */
    @Override
    public Path saveCheckpoint(Map<String, Object> extra) throws IOException {
        if (!context.isCheckpointWriter()) {
            return null;
        }
        return CheckpointWriter.write(checkpointsDir, step, model.layout(), params, adamw.m(), adamw.v(),
                adamw.stepCount(), withProgress(extra), cfg.output().keepCheckpoints());
    }

    /** The manifest entries of a checkpoint: this run's progress, then {@code extra}. */
    protected final Map<String, Object> withProgress(Map<String, Object> extra) {
        Map<String, Object> all = new LinkedHashMap<>();
        all.put("tokens_seen", tokensSeen);
        if (scaler.enabled()) {
            all.put(LOSS_SCALE, scaler.scale());
            all.put(LOSS_SCALE_GOOD_STEPS, scaler.goodSteps());
        }
        all.putAll(extra);
        return all;
    }

    @Override
    public final void resume(Checkpoint ck) {
        ck.readParams(model.layout(), params);
        if (!ck.hasOptimizerState()) {
            throw new TrainingException("checkpoint " + ck.directory() + " has no optimizer state; it cannot be resumed "
                    + "exactly (use it with generate or eval, or start a new run from scratch)");
        }
        readOptimizerState(ck);
        adamw.setStepCount(ck.adamStep());
        step = ck.step();
        Object seen = ck.extra().get("tokens_seen");
        tokensSeen = seen instanceof Number n ? n.longValue()
                : step * (long) cfg.training().globalBatch() * cfg.model().seqLen();
        // an fp32 checkpoint resumed in fp16 starts from training.loss_scale.initial
        if (ck.extra().get(LOSS_SCALE) instanceof Number scale && ck.extra().get(LOSS_SCALE_GOOD_STEPS) instanceof Number good) {
            scaler.restore(scale.doubleValue(), good.intValue());
        }
        agreeOnResumedState(ck.directory());
        model.setParams(params);
    }

    /** The AdamW moments of this rank's state range. */
    protected void readOptimizerState(Checkpoint ck) {
        ck.readOptimizer(model.layout(), adamw.m(), adamw.v());
    }

    /** With several replicas: check they resumed alike and make their state equal (nothing for one process). */
    protected void agreeOnResumedState(Path checkpointDir) {
    }

    /** Checks the replicas resumed from the same step and makes their parameters (and, unless sharded, moments) equal. */
    protected final void broadcastResumedState(DataParallelGroup replicas, Path checkpointDir, boolean momentsToo) {
        replicas.checkSameResume(checkpointDir, step, adamw.stepCount(), tokensSeen);
        replicas.broadcastFromFirst(params, "resumed parameters");
        if (momentsToo) {
            replicas.broadcastFromFirst(adamw.m(), "resumed AdamW m");
            replicas.broadcastFromFirst(adamw.v(), "resumed AdamW v");
        }
    }

    /**
     * What this rank's loader served and what its gradient synchronisation sent, so that "each rank trained on its
     * 1/N of the global batch" can be checked from the outside; layouts add their own fields.
     */
    @Override
    public final String summaryJson(double lastValLoss) {
        return String.format(Locale.ROOT, "{\"rank\":%d,\"data_parallel_size\":%d,\"steps\":%d,"
                        + "\"samples\":%d,\"sample_digest\":\"%016x\",\"gradient_buffer_bytes\":%d,"
                        + "\"gradient_allreduce_bytes_sent\":%d,\"optimizer_state_elements\":%d,"
                        + "\"last_val_loss\":%s%s}%n", context.rank(), context.dataParallelSize(), stepsRun, samplesServed,
                sampleDigest, grads.length() * grads.dataType().width(), gradientBytesSent(), adamw.m().length(),
                Double.isFinite(lastValLoss) ? Double.toString(lastValLoss) : "null", layoutSummaryFields());
    }

    /** Bytes this rank sent synchronising gradients so far. */
    protected long gradientBytesSent() {
        return 0;
    }

    /** More summary fields, each preceded by a comma, or "". */
    protected String layoutSummaryFields() {
        return "";
    }

    @Override
    public void close() {
        model.close();
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }
}
