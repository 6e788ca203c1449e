package io.dtrain.model.fused;

import io.dtrain.compute.Workers;
import io.dtrain.config.ModelConfig;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.PhaseClock;
import io.dtrain.model.Stage;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * One pipeline stage of the GPT computed by hand-written forward/backward pairs (llm.c's train_gpt2.c is the model
 * of shape): blocks [firstBlock, endBlock); stage 0 also the token + position embedding; the last stage also ln_f
 * (pre-norm), the LM head and the mean cross-entropy. Same model and same numbers as the SameDiff stage graph
 * (tests hold them equal), but: parameters and gradients are used in place in the trainer's flat buffers
 * ({@link Weights}); activations live in {@link Activations} allocated once per micro-batch slot and kept for the
 * backward pass (no recomputed forward); GEMMs go to BLAS, the rest to fused {@link Kernels}; the {@link Workers}
 * team runs a whole pass as one parallel region ({@link StagePasses}). Nothing is allocated per micro-batch once
 * the slots exist.
 *
 * <p>Shapes: B sequences of T tokens, N = B*T rows, D = d_model, H heads of size hd = D/H, F = d_ff, V = vocab.
 * Activations are row-major [N, D] (row = sample-major token); weights [in, out] as GPT-2's Conv1D.
 */
public final class FusedStage implements Stage {
    private final ModelConfig cfg;
    private final ParamLayout layout;
    private final int stage;
    private final int firstBlock;
    private final int blocks;
    private final boolean first;
    private final boolean last;
    private final boolean isDouble;
    private final int seqLen;
    private final int d;
    private final int vocab;
    private final Workers workers;
    private final PhaseClock clock;
    private final OpTimes opTimes = new OpTimes();
    private final StagePasses passes;
    private final boolean recompute;
    /** With recompute: the one block workspace every slot shares (sized for the largest batch seen). */
    private Activations.Block workspace;

    private Weights params;
    private Weights grads;

    /** Activation sets by slot + 1 (slot -1 serves evaluation and the last stage's one-call loss). */
    private Activations[] slots = new Activations[0];
    private Scratch scratch;
    /** The batch of the last pass, and its targets (the loss pass reads them at once). */
    private int batch;
    private int[] targets;

    public FusedStage(ModelConfig cfg, ParamLayout layout, int stage, int numStages, int firstBlock, int endBlock,
                      Workers workers, PhaseClock clock) {
        this(cfg, layout, stage, numStages, firstBlock, endBlock, false, workers, clock);
    }

    /**
     * @param recompute keep only each block's input per in-flight micro-batch and recompute the block's activations
     *                  into one shared workspace just before its backward pass ({@code training.recompute: blocks})
     */
    public FusedStage(ModelConfig cfg, ParamLayout layout, int stage, int numStages, int firstBlock, int endBlock,
                      boolean recompute, Workers workers, PhaseClock clock) {
        this.cfg = cfg;
        this.layout = layout;
        this.stage = stage;
        this.firstBlock = firstBlock;
        this.blocks = endBlock - firstBlock;
        this.first = stage == 0;
        this.last = stage == numStages - 1;
        this.isDouble = cfg.isDouble();
        this.seqLen = cfg.seqLen();
        this.d = cfg.dModel();
        this.vocab = cfg.vocabSize();
        this.workers = workers;
        this.clock = clock;
        this.recompute = recompute;
        this.passes = new StagePasses(cfg, stage, numStages, firstBlock, endBlock, recompute, workers, opTimes);
    }

    @Override
    public int index() {
        return stage;
    }

    @Override
    public boolean isFirst() {
        return first;
    }

    @Override
    public boolean isLast() {
        return last;
    }

    /** Time by kind of op of the passes since the last reset (off unless enabled). */
    public OpTimes opTimes() {
        return opTimes;
    }

    // ------------------------------------------------------------------ parameters and buffers

    /**
     * fp16 mixed precision, emulated as a GPU computes it: the forward and backward passes read fp16 copies of the
     * (fp32 master) parameters, every activation and activation gradient they store is rounded to fp16, GEMMs
     * accumulate in fp32 (as tensor cores do) and the parameter gradients are accumulated in fp32 (Megatron's
     * main_grad). The caller hands {@link #setParams} the fp16-rounded copy ({@code GptModel} keeps it).
     */
    @Override
    public void setHalfPrecision(boolean half) {
        if (half && isDouble) {
            throw new IllegalArgumentException("fp16 emulation needs a float32 model");
        }
        passes.setHalfPrecision(half);
    }

    /** Binds the stage to the trainer's flat parameters; they are read in place (no copy) until the next call. */
    @Override
    public void setParams(INDArray flatParams) {
        if (params == null || params.flat != flatParams) {
            params = new Weights(cfg, layout, flatParams, first, last, firstBlock, firstBlock + blocks);
        }
    }

    private void bindGrads(INDArray flatGrads) {
        if (grads == null || grads.flat != flatGrads) {
            grads = new Weights(cfg, layout, flatGrads, first, last, firstBlock, firstBlock + blocks);
        }
    }

    private Activations slot(int slot, int batchSize) {
        int index = slot + 1;
        if (index >= slots.length) {
            slots = java.util.Arrays.copyOf(slots, index + 1);
        }
        if (recompute && (workspace == null || workspace.capacity < batchSize)) {
            workspace = new Activations.Block(cfg, batchSize, isDouble);
            for (int i = 0; i < slots.length; i++) {
                slots[i] = null; // every slot must point at the new workspace
            }
        }
        if (slots[index] == null || slots[index].capacity < batchSize) {
            slots[index] = new Activations(cfg, blocks, first, last, batchSize, isDouble, recompute ? workspace : null);
        }
        if (scratch == null || scratch.capacity < batchSize) {
            scratch = new Scratch(cfg, batchSize, workers.size(), isDouble);
        }
        return slots[index];
    }

    /** Checks and reads a micro-batch into a slot: tokens (stage 0), targets (last stage), the input (later stages). */
    private Activations prepare(int slot, int[][] windows, INDArray xIn, DropoutKeys keys, boolean withTargets) {
        if (params == null) {
            throw new IllegalStateException("stage " + stage + ": call setParams before running it");
        }
        int b = first || withTargets ? windows.length : batchOf(xIn);
        if (b == 0) {
            throw new IllegalArgumentException("empty micro-batch");
        }
        if (!first && batchOf(xIn) != b) {
            throw new IllegalArgumentException("stage " + stage + ": " + b + " windows but activations of "
                    + batchOf(xIn) + " sequences");
        }
        DropoutKeys used = cfg.dropout() > 0.0 ? keys : null;
        if (used != null && used.batchSize() != b) {
            throw new IllegalArgumentException("dropout keys name " + used.batchSize() + " samples but the batch has " + b);
        }
        Activations act = slot(slot, b);
        act.batch = b;
        act.keys = used;
        batch = b;
        int rows = b * seqLen;
        if (withTargets && (targets == null || targets.length < rows)) {
            targets = new int[rows];
        }
        for (int s = 0; (first || withTargets) && s < b; s++) {
            int[] w = windows[s];
            if (w.length < seqLen + (withTargets ? 1 : 0)) {
                throw new IllegalArgumentException("window " + s + " has " + w.length + " tokens, expected "
                        + (seqLen + (withTargets ? 1 : 0)));
            }
            for (int t = first ? 0 : 1; t < seqLen + (withTargets ? 1 : 0); t++) {
                int tok = w[t];
                if (tok < 0 || tok >= vocab) {
                    throw new IllegalArgumentException("window " + s + " position " + t + ": token " + tok
                            + " is outside [0, model.vocab_size=" + vocab + ")");
                }
                if (first && t < seqLen) {
                    act.tokens[s * seqLen + t] = tok;
                }
                if (withTargets && t > 0) {
                    targets[s * seqLen + t - 1] = tok;
                }
            }
        }
        if (!first) {
            copyIn(xIn, act.x[0]);
        }
        return act;
    }

    private void copyIn(INDArray x, Tensor dst) {
        if (x.dataType() != (isDouble ? DataType.DOUBLE : DataType.FLOAT)) {
            throw new IllegalArgumentException("stage " + stage + ": activations are " + x.dataType() + ", the model is "
                    + (isDouble ? "float64" : "float32"));
        }
        INDArray src = x.isView() || x.ordering() != 'c' ? x.dup('c') : x;
        Tensor s = Tensor.view(src.reshape(src.length()), 0, src.length());
        dst.copyFrom(s, 0, 0, (int) src.length());
    }

    private int batchOf(INDArray x) {
        if (x == null) {
            throw new IllegalArgumentException("stage " + stage + " needs the previous stage's activations");
        }
        if (x.rank() == 3 && x.size(1) == seqLen && x.size(2) == d) {
            return (int) x.size(0);
        }
        if (x.rank() == 2 && x.size(1) == d && x.size(0) % seqLen == 0) {
            return (int) (x.size(0) / seqLen);
        }
        throw new IllegalArgumentException("stage " + stage + ": expected activations [B, " + seqLen + ", " + d
                + "] or [B*" + seqLen + ", " + d + "], got " + java.util.Arrays.toString(x.shape()));
    }

    /** A [B, T, D] view of a tensor's first B*T rows. */
    private INDArray view(Tensor t, int b) {
        return t.owner().get(NDArrayIndex.interval(0, (long) b * seqLen * d)).reshape('c', b, seqLen, d);
    }

    // ------------------------------------------------------------------ passes

    /**
     * Non-last stage: the forward pass of one micro-batch (stage 0 reads the first T tokens of each window, later
     * stages {@code xIn} [B, T, D]); with {@code slot >= 0} keeps what {@link #backward} of that slot needs.
     * Returns x_out [B, T, D], valid until the slot's next forward.
     */
    @Override
    public INDArray forward(int slot, int[][] windows, INDArray xIn, DropoutKeys keys) {
        requireNotLast("forward");
        long t0 = System.nanoTime();
        Activations act = prepare(slot, windows, xIn, keys, false);
        passes.forward(act, scratch, params, batch, act.keys);
        clock.addForward(System.nanoTime() - t0);
        return view(act.x[blocks], batch);
    }

    /**
     * Non-last stage: the backward pass of the micro-batch held in {@code slot}, given dL/d(x_out). ADDS the
     * parameter gradients into {@code flatGrads}; returns dL/d(x_in) [B, T, D] (valid until the next call), or
     * null on stage 0, whose embedding gradients were added instead.
     */
    @Override
    public INDArray backward(int slot, INDArray gradOut, INDArray flatGrads) {
        requireNotLast("backward");
        long t0 = System.nanoTime();
        int index = slot + 1;
        if (slot < 0 || index >= slots.length || slots[index] == null || slots[index].batch == 0) {
            throw new IllegalStateException("stage " + stage + ": no forward pass is held in slot " + slot);
        }
        Activations act = slots[index];
        batch = act.batch;
        bindGrads(flatGrads);
        if (batchOf(gradOut) != batch) {
            throw new IllegalArgumentException("stage " + stage + ": gradient for " + batchOf(gradOut)
                    + " sequences, the forward pass held " + batch);
        }
        copyIn(gradOut, scratch.dRes);
        passes.backward(act, scratch, params, grads, batch, act.keys);
        act.batch = 0;
        clock.addBackward(System.nanoTime() - t0);
        return first ? null : gradInput();
    }

    /**
     * Last stage: the mean next-token cross-entropy of a micro-batch (targets: tokens 1..T of each window). With
     * {@code flatGrads} non-null also the backward pass: ADDS gradScale x the gradients of that mean into
     * flatGrads, and {@link #gradInput()} then holds gradScale x dL/d(x_in) (stage 0: the embedding's gradients
     * are added instead). {@code keys} null means no dropout.
     */
    @Override
    public double loss(int[][] windows, INDArray xIn, DropoutKeys keys, double gradScale, INDArray flatGrads) {
        requireLast("loss");
        long t0 = System.nanoTime();
        Activations act = prepare(-1, windows, xIn, keys, true);
        int rows = batch * seqLen;
        if (flatGrads != null) {
            bindGrads(flatGrads);
        }
        passes.forward(act, scratch, params, batch, act.keys);
        long t1 = System.nanoTime();
        clock.addForward(t1 - t0);
        passes.loss(targets, flatGrads == null ? null : grads, gradScale / rows);
        if (flatGrads != null) {
            passes.backward(act, scratch, params, grads, batch, act.keys);
            clock.addBackward(System.nanoTime() - t1);
        }
        double sum = 0;
        for (int r = 0; r < rows; r++) {
            sum += scratch.losses.get(r);
        }
        return sum / rows;
    }

    /** dL/d(x_in) of the last {@link #loss} with gradients (or {@link #backward}), [B, T, D]; null on stage 0. */
    @Override
    public INDArray gradInput() {
        if (first) {
            return null;
        }
        if (scratch.gradInputView == null || scratch.gradInputView.size(0) != batch) {
            scratch.gradInputView = view(scratch.dRes, batch);
        }
        return scratch.gradInputView;
    }

    /** Last stage: logits [B, T, V] of inputs (the first T tokens of each window), no dropout. */
    @Override
    public INDArray logits(int[][] windows, INDArray xIn) {
        requireLast("logits");
        Activations act = prepare(-1, windows, xIn, null, false);
        passes.forward(act, scratch, params, batch, null);
        INDArray out = Nd4j.create(isDouble ? DataType.DOUBLE : DataType.FLOAT, batch, seqLen, vocab);
        Tensor o = Tensor.view(out.reshape(out.length()), 0, out.length());
        Tensor in = cfg.preNorm() ? act.lnf : act.x[blocks];
        int rows = batch * seqLen;
        for (int r0 = 0; r0 < rows; r0 += scratch.logitRows) {
            int n = Math.min(scratch.logitRows, rows - r0);
            passes.logits(in, r0, n, o, r0 * vocab);
        }
        return out;
    }

    /** For tests: the activations of slot {@code slot} (-1: the last evaluation or loss). */
    Activations activations(int slot) {
        return slots[slot + 1];
    }

    /**
     * Bytes the activations of one in-flight micro-batch of {@code batch} sequences take in a stage of
     * {@code blocks} blocks (with {@code recompute}, without the blocks: they share one workspace).
     */
    public static long slotBytes(ModelConfig cfg, int blocks, boolean first, boolean last, int batch, boolean recompute) {
        return Activations.bytes(cfg, blocks, first, last, batch, recompute);
    }

    /** Bytes a stage holds once whatever the micro-batches in flight: scratch buffers and the recompute workspace. */
    public static long sharedBytes(ModelConfig cfg, int batch, boolean recompute, int threads) {
        return Scratch.bytes(cfg, batch, threads) + (recompute ? Activations.Block.bytes(cfg, batch) : 0);
    }

    /** The dropout masks' share of {@link #slotBytes} (JavaCPP memory, counted against javacpp.maxbytes). */
    public static long slotMaskBytes(ModelConfig cfg, int blocks, boolean first, int batch, boolean recompute) {
        return Activations.maskBytes(cfg, blocks, first, batch, recompute);
    }

    /** The dropout masks' share of {@link #sharedBytes}. */
    public static long sharedMaskBytes(ModelConfig cfg, int batch, boolean recompute) {
        return recompute ? Activations.Block.maskBytes(cfg, batch) : 0;
    }

    /**
     * Bytes of activations this stage has allocated: every slot's own, the shared workspace and the scratch buffers
     * (each constructor asserts it allocated what {@link #slotBytes} and {@link #sharedBytes} predict).
     */
    public long activationBytes() {
        long total = scratch == null ? 0 : scratch.allocatedBytes;
        for (Activations a : slots) {
            total += a == null ? 0 : a.allocatedBytes;
        }
        return total + (workspace == null ? 0 : workspace.allocatedBytes);
    }

    private void requireLast(String what) {
        if (!last) {
            throw new IllegalStateException(what + " runs on the last stage only, this is stage " + stage);
        }
    }

    private void requireNotLast(String what) {
        if (last) {
            throw new IllegalStateException(what + " runs on non-last stages only; the last stage uses loss");
        }
    }

    @Override
    public void close() {
        slots = new Activations[0];
        workspace = null;
        scratch = null;
        params = null;
        grads = null;
    }
}
