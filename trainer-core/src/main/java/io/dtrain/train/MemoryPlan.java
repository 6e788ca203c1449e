package io.dtrain.train;

import io.dtrain.common.ByteSizes;
import io.dtrain.compute.Workers;
import io.dtrain.config.ModelConfig;
import io.dtrain.config.RunConfig;
import io.dtrain.model.GptModel;
import io.dtrain.model.GptNames;
import io.dtrain.model.StagePartition;
import io.dtrain.model.fused.FusedStage;
import io.dtrain.parallel.pipeline.Op;
import io.dtrain.parallel.pipeline.PipelineSchedule;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What one rank of a run will allocate, estimated from the configuration before anything is built, so that a run
 * that cannot fit is refused at once with the numbers and the knobs instead of dying in an allocation minutes later:
 *
 * <ul>
 *   <li>parameters and gradients: the flat buffers of the layout this rank holds (the whole model, or its pipeline
 *       stage); with {@code training.precision: fp16} the parameters twice (the fp32 masters and the fp16-rounded
 *       copy the passes read, float32 on the CPU);</li>
 *   <li>AdamW state: two more such buffers (m, v), or with ZeRO-1 ({@code optimizer.shard_state}) this rank's
 *       1/D share of them plus the padded gather buffer;</li>
 *   <li>activations, per stage this rank computes: the fused engine keeps one {@code Activations} set per
 *       micro-batch in flight (a whole model: one, plus one for evaluation in every stage but the last; a pipeline
 *       stage: as many as its schedule holds at once, at most P for 1F1B, M for GPipe) and one scratch set, sized
 *       exactly as the engine allocates them ({@link FusedStage#slotBytes}, {@link FusedStage#sharedBytes}; with
 *       {@code training.recompute: blocks} a slot keeps only the blocks' inputs and the stage one shared block); the SameDiff engine allocates a
 *       fresh array per op, freed only by a GC, so it is estimated as {@value #SAMEDIFF_PASS_FACTOR} times a fused
 *       set for the one pass it runs at a time, plus its copies of the stage's parameters and gradients and the
 *       [B, T, D] input it keeps per micro-batch in flight (a documented rough multiple, not an exact count);</li>
 *   <li>data read into memory (raw .jsonl input packed on the heap; preprocessed shards are memory-mapped and
 *       count as nothing) and the evaluation batches.</li>
 * </ul>
 */
public record MemoryPlan(String engine, int batch, int sets, long parameters, long gradients, long optimizer,
                         long activations, long javacpp, long data, RunConfig cfg, RunContext context) {

    /** SameDiff's peak for one forward + backward pass, in fused activation sets (every op output and its gradient). */
    static final int SAMEDIFF_PASS_FACTOR = 3;

    /** The plan of this rank with the run's micro-batch and {@code dataBytes} of data in memory. */
    public static MemoryPlan of(RunConfig cfg, RunContext context, long dataBytes) {
        return of(cfg, context, cfg.microBatch(context.dataParallelSize()), dataBytes);
    }

    /** The plan with micro-batches of {@code batch} sequences (which must divide the global batch per rank). */
    static MemoryPlan of(RunConfig cfg, RunContext context, int batch, long dataBytes) {
        ModelConfig m = cfg.model();
        long e = m.isDouble() ? 8 : 4;
        int dp = context.dataParallelSize();
        int microbatches = cfg.training().globalBatch() / (batch * dp);
        int stages = cfg.parallel().pipelineStages();
        String engine = m.resolvedEngine();
        int threads = Workers.defaultSize();
        long rowBytes = (long) batch * m.seqLen() * m.dModel() * e;   // one [B, T, D] tensor
        boolean evaluates = cfg.data().val() != null && !cfg.data().val().isBlank();
        boolean recompute = cfg.training().recomputeBlocks();

        int[] blocks;
        List<Integer> mine = new ArrayList<>();
        long layout;
        int inFlight;
        if (stages > 1) {
            blocks = StagePartition.blocksPerStage(m, stages, cfg.parallel().pipelinePartition());
            int stage = context.pipeline() != null ? context.pipeline().stage() : 0;
            mine.add(stage);
            layout = GptNames.stageLayout(m, blocks, stage).size();
            inFlight = inFlight(cfg.parallel().pipelineSchedule(), stages, microbatches, stage);
        } else {
            blocks = GptModel.balancedPartition(m, Math.min(m.nLayer(), cfg.parallel().dpOverlapSegments()));
            for (int s = 0; s < blocks.length; s++) {
                mine.add(s);
            }
            layout = GptNames.layout(m, blocks).size();
            inFlight = 1;
        }

        long activations = 0;
        long masks = 0;
        int sets = 0;
        for (int s : mine) {
            boolean first = s == 0;
            boolean last = s == blocks.length - 1;
            long set = FusedStage.slotBytes(m, blocks[s], first, last, batch, recompute);
            // the last stage computes loss and backward in one call on one set; the others hold each micro-batch in
            // flight until its backward, and evaluate in a set of their own
            int held = last ? 1 : inFlight + (evaluates ? 1 : 0);
            long received = stages > 1 && !first ? inFlight * rowBytes : 0;
            if ("fused".equals(engine)) {
                activations += held * set + FusedStage.sharedBytes(m, batch, recompute, threads) + received;
                masks += held * FusedStage.slotMaskBytes(m, blocks[s], first, batch, recompute)
                        + FusedStage.sharedMaskBytes(m, batch, recompute);
                sets += held;
            } else {
                long stageParams = GptNames.stageLayout(m, blocks, s).size() * e;
                activations += SAMEDIFF_PASS_FACTOR * set + 2 * stageParams + inFlight * rowBytes + received;
                sets += 1;
            }
        }

        long optimizer;
        if (stages == 1 && dp > 1 && cfg.optimizer().shardState()) {
            long slice = (layout + dp - 1) / dp;
            optimizer = (2 * slice + slice * dp + slice) * e;   // m, v of the slice; the padded gather buffer; a slice
        } else {
            optimizer = 2 * layout * e;
        }
        long evalBatches = evaluates ? (long) cfg.training().evalSequences() * (m.seqLen() + 1) * 4 : 0;
        // fp16 emulation keeps a rounded copy of the parameters beside the fp32 masters (float32 on the CPU)
        long parameters = layout * e * (cfg.training().fp16() ? 2 : 1);
        return new MemoryPlan(engine, batch, sets, parameters, layout * e, optimizer, activations, masks,
                dataBytes + evalBatches, cfg, context);
    }

    /** The most micro-batches a stage holds at once in a training step of this schedule (forwards not yet backward). */
    static int inFlight(String schedule, int stages, int microbatches, int stage) {
        int live = 0;
        int most = 0;
        for (Op op : PipelineSchedule.byName(schedule).ops(stages, Math.max(1, microbatches), stage)) {
            if (op.kind() == Op.Kind.FORWARD) {
                most = Math.max(most, ++live);
            } else if (op.kind() == Op.Kind.BACKWARD) {
                live--;
            }
        }
        return Math.max(1, most);
    }

    /** The same plan with {@code bytes} of data held in memory (once the data is loaded). */
    public MemoryPlan withData(long bytes) {
        return of(cfg, context, batch, bytes);
    }

    /** Everything this rank allocates. */
    public long total() {
        return parameters + gradients + optimizer + activations + data;
    }

    /** The one line printed at start. */
    public String describe(MemoryLimits limits) {
        MemoryLimits.Limit tightest = tightest(limits);
        return "memory: about " + ByteSizes.format(total()) + " per rank = " + parts()
                + (tightest == null ? "" : "; limit: " + tightest.name());
    }

    private String parts() {
        return "parameters " + ByteSizes.format(parameters) + " + gradients " + ByteSizes.format(gradients)
                + " + AdamW state " + ByteSizes.format(optimizer) + " + activations " + ByteSizes.format(activations)
                + " (" + engine + " engine, " + sets + " set(s) for micro-batches of " + batch + " sequences)"
                + " + data " + ByteSizes.format(data);
    }

    private long need(MemoryLimits.Part part) {
        return switch (part) {
            case ALL -> total();
            case HEAP -> data;
            case JAVACPP -> javacpp;
        };
    }

    /** The first limit this plan exceeds, or null when it fits. */
    MemoryLimits.Limit exceeded(MemoryLimits limits) {
        for (MemoryLimits.Limit l : limits.limits()) {
            if (need(l.part()) > l.room()) {
                return l;
            }
        }
        return null;
    }

    /** The limit whose room is smallest for the whole plan (what the start line names), or null. */
    private static MemoryLimits.Limit tightest(MemoryLimits limits) {
        MemoryLimits.Limit best = null;
        for (MemoryLimits.Limit l : limits.limits()) {
            if (l.part() == MemoryLimits.Part.ALL && (best == null || l.room() < best.room())) {
                best = l;
            }
        }
        return best;
    }

    /** Refuses a plan that exceeds a limit: one line with the numbers, the limit and the knobs that fix it. */
    public void check(MemoryLimits limits) {
        MemoryLimits.Limit over = exceeded(limits);
        if (over != null) {
            throw new TrainingException("this run does not fit in memory: it needs about " + ByteSizes.format(need(over.part()))
                    + (over.part() == MemoryLimits.Part.ALL ? " per rank (" + parts() + ")" : "") + " but "
                    + over.name() + " leaves " + ByteSizes.format(Math.max(0, over.room())) + "; " + knobs(limits, over));
        }
    }

    /**
     * A run that ran out of memory anyway ({@code when}: "while reading the data", "at step 5"): one line like a
     * refusal, with the error that was thrown. The Java heap (data read into memory) has its own knobs; anything else
     * is reported with the estimate and the tightest limit.
     */
    public TrainingException outOfMemory(Throwable error, String when, MemoryLimits limits) {
        String what = "out of memory " + when + " (" + error.getMessage() + ")";
        if (isJavaHeap(error)) {
            MemoryLimits.Limit heap = limits.limits().stream().filter(l -> l.part() == MemoryLimits.Part.HEAP)
                    .findFirst().orElseThrow();
            return new TrainingException(what + ": " + heap.name() + " is full; " + heap.raise(), error);
        }
        MemoryLimits.Limit tightest = tightest(limits);
        return new TrainingException(what + "; the estimate was about " + ByteSizes.format(total()) + " per rank ("
                + parts() + ")" + (tightest == null ? "" : " against " + tightest.name()) + "; "
                + knobs(limits, tightest), error);
    }

    /** True when {@code e} is the JVM's heap running out (not off-heap memory). */
    static boolean isJavaHeap(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String m = t.getMessage() == null ? "" : t.getMessage();
            if (t instanceof OutOfMemoryError && (m.contains("Java heap space") || m.contains("GC overhead")
                    || m.contains("Requested array size"))) {
                return true;
            }
        }
        return false;
    }

    /** True when {@code e} is a failed allocation: the JVM's or JavaCPP's OutOfMemoryError, or ND4J's wrapper of one. */
    public static boolean isOutOfMemory(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String m = t.getMessage() == null ? "" : t.getMessage();
            if (t instanceof OutOfMemoryError || m.contains("Cannot allocate") || m.contains("maxPhysicalBytes")
                    || m.contains("Failed to allocate")) {
                return true;
            }
        }
        return false;
    }

    /** What lowers the need or raises the limit, with numbers where they are known. */
    private String knobs(MemoryLimits limits, MemoryLimits.Limit over) {
        List<String> fixes = new ArrayList<>();
        if (over == null || over.part() != MemoryLimits.Part.HEAP) {
            int fits = largestFittingBatch(limits);
            String batchKnob = "training.micro_batch";
            if (fits > 0) {
                MemoryPlan smaller = of(cfg, context, fits, data - evalBytes());
                fixes.add(String.format(Locale.ROOT, "lower %s (%d fits: about %s; activations grow with it)",
                        batchKnob, fits, ByteSizes.format(smaller.total())));
            } else if (batch > 1) {
                fixes.add("lower " + batchKnob + " (even 1 does not fit alone)");
            }
            if (cfg.parallel().pipelineStages() < cfg.model().nLayer()) {
                fixes.add("split the model over more pipeline stages (parallel.pipeline.stages, one process each)");
            }
            if (context.dataParallelSize() > 1 && cfg.parallel().pipelineStages() == 1 && !cfg.optimizer().shardState()) {
                fixes.add("shard the AdamW state over the " + context.dataParallelSize() + " ranks"
                        + " (optimizer.shard_state: true)");
            }
        }
        if (over != null) {
            fixes.add(over.raise());
        }
        if (fixes.size() < 2) {
            return String.join("", fixes);
        }
        return String.join(", ", fixes.subList(0, fixes.size() - 1)) + ", or " + fixes.get(fixes.size() - 1);
    }

    private long evalBytes() {
        boolean evaluates = cfg.data().val() != null && !cfg.data().val().isBlank();
        return evaluates ? (long) cfg.training().evalSequences() * (cfg.model().seqLen() + 1) * 4 : 0;
    }

    /** The largest micro-batch below this one that divides the global batch per rank and fits; 0 if none does. */
    private int largestFittingBatch(MemoryLimits limits) {
        int perRank = cfg.training().globalBatch() / context.dataParallelSize();
        for (int b = batch - 1; b >= 1; b--) {
            if (perRank % b == 0 && of(cfg, context, b, data - evalBytes()).exceeded(limits) == null) {
                return b;
            }
        }
        return 0;
    }
}
