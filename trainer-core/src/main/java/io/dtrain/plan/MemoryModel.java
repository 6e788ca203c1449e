package io.dtrain.plan;

import io.dtrain.config.ModelConfig;
import io.dtrain.config.RunConfig;
import io.dtrain.model.GptModel;
import io.dtrain.model.GptNames;
import io.dtrain.model.StagePartition;
import io.dtrain.model.fused.FusedStage;
import io.dtrain.parallel.pipeline.Op;
import io.dtrain.parallel.pipeline.PipelineSchedule;

/**
 * The one model of the bytes a rank (one device) holds during training, used both by the trainer's refusal of a run
 * too big for memory ({@code io.dtrain.train.MemoryPlan}, this machine, this rank) and by {@code dtrain plan}
 * ({@link Planner}, any device, every stage). Per rank, for the pipeline stage it holds (or, without a pipeline, the
 * whole model in its {@code parallel.dp.overlap_segments} segments):
 *
 * <ul>
 *   <li><b>parameters</b>: the flat fp32 (or float64) buffer of the rank's layout; with {@code training.precision:
 *       fp16} also the fp16-rounded copy the passes read, held as float32 by both engines (the fused engine emulates
 *       fp16 by rounding; the SameDiff engine rounds inside a float32 graph, see trainer-core's README);</li>
 *   <li><b>gradients</b>: one more such buffer;</li>
 *   <li><b>optimizer</b>: AdamW's m and v, or with ZeRO-1 ({@code optimizer.shard_state}, data parallelism without
 *       pipeline stages) this rank's 1/D slice of them; ZeRO-1 also allocates the padded buffer the slices are
 *       gathered into and one slice ({@code zeroBuffers});</li>
 *   <li><b>activations</b>, by engine. The fused engine (exact: the engine's own sizing functions,
 *       {@link FusedStage#slotBytes}, {@link FusedStage#sharedBytes}): one set per micro-batch in flight (the last
 *       stage one set, as it computes loss and backward in one call; the others one more for evaluation when the run
 *       evaluates) and one shared set (scratch, and with {@code training.recompute: blocks} the one block workspace).
 *       The SameDiff engine keeps per micro-batch in flight only what its backward restarts from (the stage's
 *       [B, T, D] input; with recomputation each block's input) and allocates a fresh array per op for the one
 *       forward and backward it runs at a time, freed only by a GC: {@value #SAMEDIFF_PASS_FACTOR} fused sets of that
 *       pass (the stage, or with recomputation one block), plus its graph's copies of the stage's parameters and
 *       gradients (a documented rough multiple, not an exact count). A pipeline stage other than the first also holds
 *       the [B, T, D] inputs it received for its micro-batches in flight. fp16 stores nothing in 2 bytes in either
 *       engine today (ND4J 1.0.0-M2.1 has no HALF-in, FLOAT-out GEMM inside a graph): the SameDiff engine's rounding
 *       casts add a HALF and a float32 array for every value it stores and for that value's gradient
 *       ({@value #SAMEDIFF_FP16_CAST_FACTOR} more fused sets of the pass).</li>
 * </ul>
 * Micro-batches in flight are counted by running the stage's schedule ({@link #inFlight}): 1 without a pipeline, at
 * most P - s on stage s of 1F1B, M with GPipe. Shapes (B, T, D) as in trainer-core's
 * README, "Shapes and conventions".
 */
public final class MemoryModel {
    /** SameDiff's peak for one forward + backward pass, in fused activation sets (every op output and its gradient). */
    public static final int SAMEDIFF_PASS_FACTOR = 3;
    /** fp16 on SameDiff: each stored value and its gradient also pass through a HALF (2 bytes) and a float32 copy. */
    public static final int SAMEDIFF_FP16_CAST_FACTOR = 3;

    private MemoryModel() {
    }

    /**
     * A run's layout, as far as memory is concerned.
     *
     * @param engine   "fused" or "samediff" (resolved, never "auto")
     * @param threads  compute threads of one rank (the fused engine's scratch is per thread)
     * @param zero     ZeRO-1 requested; it applies only with data parallelism and no pipeline stages
     */
    public record Setup(ModelConfig model, String engine, boolean fp16, boolean recompute, int stages,
                        int replicas, int microBatch, String schedule, String partition, int overlapSegments,
                        boolean zero, boolean evaluates, int threads, int globalBatch) {

        /** The run {@code cfg} describes, laid out as P x D with micro-batches of {@code microBatch}. */
        public static Setup of(RunConfig cfg, String engine, int stages, int replicas, int microBatch,
                               String schedule, boolean recompute, boolean zero, int threads) {
            boolean evaluates = cfg.data().val() != null && !cfg.data().val().isBlank();
            return new Setup(cfg.model(), engine, cfg.training().fp16(), recompute, stages, replicas, microBatch,
                    schedule, cfg.parallel().pipelinePartition(), cfg.parallel().dpOverlapSegments(), zero, evaluates,
                    threads, cfg.training().globalBatch());
        }

        /** Micro-batches per replica per step. */
        public int microBatches() {
            return globalBatch / (microBatch * replicas);
        }

        boolean zeroApplies() {
            return zero && stages == 1 && replicas > 1;
        }

        /** Blocks per stage, or without a pipeline per overlap segment. */
        int[] blocks() {
            return stages > 1 ? StagePartition.blocksPerStage(model, stages, partition)
                    : GptModel.balancedPartition(model, Math.min(model.nLayer(), overlapSegments));
        }
    }

    /**
     * The bytes of one rank. {@code activationsPerMicroBatch} is one micro-batch's own share (a fused set, summed
     * over segments; SameDiff: what it keeps), {@code sets} how many such sets are held (summed over segments) and
     * {@code setBytes} their bytes; {@code activations} is the whole: the sets, the shared sets, received inputs and
     * the engine's own copies. {@code javacpp} is the dropout masks' share of the activations (allocated by JavaCPP,
     * not ND4J).
     */
    public record Bytes(int stage, int blocks, long parameterCount, long parameters, long gradients, long optimizer,
                        long zeroBuffers, long activationsPerMicroBatch, int sets, long setBytes, int inFlight,
                        long activations, long javacpp) {
        /** Weights (with their fp16 copy), gradients and AdamW's moments. */
        public long state() {
            return parameters + gradients + optimizer;
        }

        /** Everything but the activations' sets: shared sets, received inputs, engine copies, ZeRO-1's buffers. */
        public long overhead() {
            return activations - setBytes + zeroBuffers;
        }

        public long total() {
            return state() + zeroBuffers + activations;
        }
    }

    /** The bytes of the rank holding pipeline stage {@code stage} (0 without a pipeline). */
    public static Bytes of(Setup s, int stage) {
        ModelConfig m = s.model();
        long e = m.isDouble() ? 8 : 4;
        int[] blocks = s.blocks();
        int inFlight = s.stages() > 1 ? inFlight(s.schedule(), s.stages(), s.microBatches(), stage) : 1;
        long rowBytes = (long) s.microBatch() * m.seqLen() * m.dModel() * e;   // one [B, T, D] tensor

        int from = s.stages() > 1 ? stage : 0;
        int to = s.stages() > 1 ? stage + 1 : blocks.length;
        long perMicroBatch = 0;
        long setBytes = 0;
        long activations = 0;
        long masks = 0;
        int sets = 0;
        for (int seg = from; seg < to; seg++) {
            boolean first = seg == 0;
            boolean last = seg == blocks.length - 1;
            long slot = FusedStage.slotBytes(m, blocks[seg], first, last, s.microBatch(), s.recompute());
            long shared = FusedStage.sharedBytes(m, s.microBatch(), s.recompute(), s.threads());
            long received = s.stages() > 1 && !first ? inFlight * rowBytes : 0;
            if ("fused".equals(s.engine())) {
                int held = last ? 1 : inFlight + (s.evaluates() ? 1 : 0);
                perMicroBatch += slot;
                setBytes += held * slot;
                activations += held * slot + shared + received;
                masks += held * FusedStage.slotMaskBytes(m, blocks[seg], first, s.microBatch(), s.recompute())
                        + FusedStage.sharedMaskBytes(m, s.microBatch(), s.recompute());
                sets += held;
            } else {
                // with recomputation SameDiff runs a chain of one-block graphs: it keeps each block's input (the
                // recompute slot) and a pass is one block (the recompute workspace); else the stage's graph
                long kept = s.recompute() ? slot : rowBytes;
                long pass = s.recompute() ? shared - FusedStage.sharedBytes(m, s.microBatch(), false, s.threads())
                        : slot;
                long graphCopies = 2 * GptNames.stageLayout(m, blocks, seg).size() * e;
                perMicroBatch += kept;
                setBytes += inFlight * kept;
                int passFactor = SAMEDIFF_PASS_FACTOR + (s.fp16() ? SAMEDIFF_FP16_CAST_FACTOR : 0);
                activations += inFlight * kept + passFactor * pass + graphCopies + received;
                sets += inFlight;
            }
        }
        long layout = s.stages() > 1 ? GptNames.stageLayout(m, blocks, stage).size() : GptNames.layout(m, blocks).size();
        long fp16Copy = s.fp16() ? layout * e : 0;
        long optimizer;
        long zeroBuffers = 0;
        if (s.zeroApplies()) {
            int d = s.replicas();
            long slice = (layout + d - 1) / d;
            optimizer = 2 * slice * e;                 // m and v of this rank's slice
            zeroBuffers = (slice * d + slice) * e;     // the padded buffer the slices are gathered into, and one slice
        } else {
            optimizer = 2 * layout * e;
        }
        int stageBlocks = s.stages() > 1 ? blocks[stage] : m.nLayer();
        return new Bytes(stage, stageBlocks, layout, layout * e + fp16Copy, layout * e, optimizer, zeroBuffers,
                perMicroBatch, sets, setBytes, inFlight, activations, masks);
    }

    /** The most micro-batches a stage holds at once in a training step of this schedule (forwards not yet backward). */
    public static int inFlight(String schedule, int stages, int microbatches, int stage) {
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
}
