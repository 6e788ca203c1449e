package io.dtrain.train;

import io.dtrain.common.ByteSizes;
import io.dtrain.compute.Workers;
import io.dtrain.config.RunConfig;
import io.dtrain.plan.MemoryModel;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What one rank of a run will allocate, estimated from the configuration before anything is built, so that a run
 * that cannot fit is refused at once with the numbers and the knobs instead of dying in an allocation minutes later.
 * The bytes of parameters, gradients, AdamW state and activations are {@link MemoryModel}'s (the same model
 * {@code dtrain plan} uses), for this machine, this rank's stage and the engine the run resolves to; this adds the
 * data read into memory (raw .jsonl input packed on the heap; preprocessed shards are memory-mapped and count as
 * nothing) and the evaluation batches, and checks the whole against the limits that apply ({@link MemoryLimits}).
 * {@code optimizer} is AdamW's moments and, with ZeRO-1, the buffers its slices are gathered through.
 */
public record MemoryPlan(String engine, int batch, int sets, long parameters, long gradients, long optimizer,
                         long activations, long javacpp, long data, RunConfig cfg, RunContext context) {

    /** The plan of this rank with the run's micro-batch and {@code dataBytes} of data in memory. */
    public static MemoryPlan of(RunConfig cfg, RunContext context, long dataBytes) {
        return of(cfg, context, cfg.microBatch(context.dataParallelSize()), dataBytes);
    }

    /** The plan with micro-batches of {@code batch} sequences (which must divide the global batch per rank). */
    static MemoryPlan of(RunConfig cfg, RunContext context, int batch, long dataBytes) {
        String engine = cfg.model().resolvedEngine();
        MemoryModel.Setup setup = MemoryModel.Setup.of(cfg, engine, cfg.parallel().pipelineStages(),
                context.dataParallelSize(), batch, cfg.parallel().pipelineSchedule(), cfg.training().recomputeBlocks(),
                cfg.optimizer().shardState(), Workers.defaultSize());
        int stage = context.pipeline() != null ? context.pipeline().stage() : 0;
        MemoryModel.Bytes b = MemoryModel.of(setup, stage);
        return new MemoryPlan(engine, batch, b.sets(), b.parameters(), b.gradients(), b.optimizer() + b.zeroBuffers(),
                b.activations(), b.javacpp(), dataBytes + evalBytes(cfg), cfg, context);
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
                MemoryPlan smaller = of(cfg, context, fits, data - evalBytes(cfg));
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

    private static long evalBytes(RunConfig cfg) {
        boolean evaluates = cfg.data().val() != null && !cfg.data().val().isBlank();
        return evaluates ? (long) cfg.training().evalSequences() * (cfg.model().seqLen() + 1) * 4 : 0;
    }

    /** The largest micro-batch below this one that divides the global batch per rank and fits; 0 if none does. */
    private int largestFittingBatch(MemoryLimits limits) {
        int perRank = cfg.training().globalBatch() / context.dataParallelSize();
        for (int b = batch - 1; b >= 1; b--) {
            if (perRank % b == 0 && of(cfg, context, b, data - evalBytes(cfg)).exceeded(limits) == null) {
                return b;
            }
        }
        return 0;
    }
}
