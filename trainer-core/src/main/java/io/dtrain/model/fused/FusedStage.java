package io.dtrain.model.fused;

import io.dtrain.compute.Workers;
import io.dtrain.config.ModelConfig;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.DropoutMasks;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.PhaseClock;
import io.dtrain.model.Stage;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.nio.ByteBuffer;

/**
 * One pipeline stage of the GPT computed by hand-written forward/backward pairs (llm.c's train_gpt2.c is the model
 * of shape): blocks [firstBlock, endBlock); stage 0 also the token + position embedding; the last stage also ln_f
 * (pre-norm), the LM head and the mean cross-entropy. Same model and same numbers as the SameDiff stage graph
 * (tests hold them equal), but: parameters and gradients are used in place in the trainer's flat buffers;
 * activations live in {@link Activations} allocated once per micro-batch slot and kept for the backward pass (no
 * recomputed forward); GEMMs go to BLAS, the rest to fused {@link Kernels}; the {@link Workers} team runs a whole
 * pass as one parallel region. Nothing is allocated per micro-batch once the slots exist.
 *
 * <p>Shapes: B sequences of T tokens, N = B*T rows, D = d_model, H heads of size hd = D/H, F = d_ff, V = vocab.
 * Activations are row-major [N, D] (row = sample-major token); weights [in, out] as GPT-2's Conv1D; the attention
 * scores of (sample b, head h) are a [T, T] block of att[l] at ((b*H + h) * T*T).
 *
 * <p>Work split: row-wise ops by rows, each member's share the same range in every op, so most ops need no
 * barrier; attention by (sample, head) pairs; weight gradients (sums over rows) by output columns. A barrier sits
 * wherever an op reads what another member's share wrote.
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
    private final boolean dropout;
    private final double keep;
    private final int seqLen;
    private final int d;
    private final int heads;
    private final int headDim;
    private final int ff;
    private final int vocab;
    private final double eps;
    private final double attnScale;
    /** Query rows per attention product: a row block needs only the keys up to its end (causal). */
    private final int causalBlock;
    private final Workers workers;
    private final Blas blas;
    private final Kernels k;
    private final PhaseClock clock;

    private Weights params;
    private Weights grads;
    /** Activation sets by slot (in-flight micro-batch); the last one serves evaluation and the last stage. */
    private Activations[] slots = new Activations[0];
    private Scratch scratch;
    private final OpTimes opTimes = new OpTimes();

    // ---- arguments of the running region (set by the calling thread before Workers.run; read by every member)
    private Activations act;
    private int batch;
    private int rows;
    private DropoutKeys keys;
    private boolean train;
    private double gradScale;
    private final Workers.Region forwardRegion = this::forwardPass;
    private final Workers.Region backwardRegion = this::backwardPass;
    private final Workers.Region lossRegion = this::lossPass;

    /** Buffers used within one pass only, shared by every slot; sized for the largest batch seen. */
    private static final class Scratch {
        final int capacity;
        final Tensor proj;
        final Tensor act;
        final Tensor dRes;
        final Tensor dBranch;
        final Tensor dNormA;
        final Tensor dNormB;
        final Tensor dAttY;
        final Tensor dQkv;
        final Tensor dFc;
        final Tensor losses;
        final Tensor logits;
        final int logitRows;
        /** Per member: dropped-out probabilities and the probabilities' gradient of one (sample, head). */
        final Tensor[] probs;
        final Tensor[] dProbs;
        INDArray gradInputView;
        INDArray outputView;

        Scratch(ModelConfig cfg, int capacity, int members, boolean isDouble) {
            this.capacity = capacity;
            long n = (long) capacity * cfg.seqLen();
            long d = cfg.dModel();
            long f = cfg.ffWidth();
            proj = Tensor.allocate(isDouble, n * d);
            act = Tensor.allocate(isDouble, n * f);
            dRes = Tensor.allocate(isDouble, n * d);
            dBranch = Tensor.allocate(isDouble, n * d);
            dNormA = Tensor.allocate(isDouble, n * d);
            dNormB = Tensor.allocate(isDouble, n * d);
            dAttY = Tensor.allocate(isDouble, n * d);
            dQkv = Tensor.allocate(isDouble, n * 3 * d);
            dFc = Tensor.allocate(isDouble, n * f);
            losses = Tensor.allocate(isDouble, n);
            // The classifier runs over row chunks so [rows, V] logits stay small even for GPT-2's 50,257 tokens.
            logitRows = (int) Math.max(1, Math.min(n, (1L << 24) / cfg.vocabSize()));
            logits = Tensor.allocate(isDouble, (long) logitRows * cfg.vocabSize());
            probs = new Tensor[members];
            dProbs = new Tensor[members];
            long tt = (long) cfg.seqLen() * cfg.seqLen();
            for (int i = 0; i < members; i++) {
                probs[i] = Tensor.allocate(isDouble, tt);
                dProbs[i] = Tensor.allocate(isDouble, tt);
            }
        }
    }

    public FusedStage(ModelConfig cfg, ParamLayout layout, int stage, int numStages, int firstBlock, int endBlock,
                      Workers workers, PhaseClock clock) {
        this.cfg = cfg;
        this.layout = layout;
        this.stage = stage;
        this.firstBlock = firstBlock;
        this.blocks = endBlock - firstBlock;
        this.first = stage == 0;
        this.last = stage == numStages - 1;
        this.isDouble = cfg.isDouble();
        this.dropout = cfg.dropout() > 0.0;
        this.keep = 1.0 / (1.0 - cfg.dropout());
        this.seqLen = cfg.seqLen();
        this.d = cfg.dModel();
        this.heads = cfg.nHead();
        this.headDim = cfg.headDim();
        this.ff = cfg.ffWidth();
        this.vocab = cfg.vocabSize();
        this.eps = cfg.layerNormEps();
        this.attnScale = 1.0 / Math.sqrt(headDim);
        this.causalBlock = Math.max(32, Math.min(128, seqLen / 8));
        this.workers = workers;
        this.blas = new Blas(workers.size());
        this.k = isDouble ? new DoubleKernels() : new FloatKernels();
        this.clock = clock;
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

    // ------------------------------------------------------------------ parameters and buffers

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
        int index = slot + 1; // slot -1 (no backward follows) is index 0
        if (index >= slots.length) {
            slots = java.util.Arrays.copyOf(slots, index + 1);
        }
        if (slots[index] == null || slots[index].capacity < batchSize) {
            slots[index] = new Activations(cfg, blocks, first, last, batchSize, isDouble);
        }
        if (scratch == null || scratch.capacity < batchSize) {
            scratch = new Scratch(cfg, batchSize, workers.size(), isDouble);
        }
        return slots[index];
    }

    private int[] targetBuffer;

    private void prepare(int slot, int[][] windows, INDArray xIn, DropoutKeys dropoutKeys, boolean withTargets) {
        if (params == null) {
            throw new IllegalStateException("stage " + stage + ": call setParams before running it");
        }
        int b = first || withTargets ? windows.length : batchOf(xIn);
        if (!first && batchOf(xIn) != b) {
            throw new IllegalArgumentException("stage " + stage + ": " + b + " windows but activations of " + batchOf(xIn)
                    + " sequences");
        }
        if (b == 0) {
            throw new IllegalArgumentException("empty micro-batch");
        }
        act = slot(slot, b);
        batch = b;
        rows = b * seqLen;
        keys = dropout ? dropoutKeys : null;
        if (keys != null && keys.batchSize() != b) {
            throw new IllegalArgumentException("dropout keys name " + keys.batchSize() + " samples but the batch has " + b);
        }
        act.batch = b;
        act.keys = keys;
        if (first || withTargets) {
            if (targetBuffer == null || targetBuffer.length < rows) {
                targetBuffer = new int[rows];
            }
            for (int s = 0; s < b; s++) {
                int[] w = windows[s];
                if (w.length < seqLen + (withTargets ? 1 : 0)) {
                    throw new IllegalArgumentException("window " + s + " has " + w.length + " tokens, expected "
                            + (seqLen + (withTargets ? 1 : 0)));
                }
                for (int t = 0; t < seqLen; t++) {
                    int tok = w[t];
                    if (tok < 0 || tok >= vocab) {
                        throw new IllegalArgumentException("window " + s + " position " + t + ": token " + tok
                                + " is outside [0, model.vocab_size=" + vocab + ")");
                    }
                    if (first) {
                        act.tokens[s * seqLen + t] = tok;
                    }
                    if (withTargets) {
                        int target = w[t + 1];
                        if (target < 0 || target >= vocab) {
                            throw new IllegalArgumentException("window " + s + " position " + (t + 1) + ": token "
                                    + target + " is outside [0, model.vocab_size=" + vocab + ")");
                        }
                        targetBuffer[s * seqLen + t] = target;
                    }
                }
            }
        }
        if (!first) {
            copyIn(xIn, act.x[0]);
        }
    }

    private void copyIn(INDArray xIn, Tensor dst) {
        if (xIn.dataType() != (isDouble ? org.nd4j.linalg.api.buffer.DataType.DOUBLE : org.nd4j.linalg.api.buffer.DataType.FLOAT)) {
            throw new IllegalArgumentException("stage " + stage + ": activations are " + xIn.dataType() + ", the model is "
                    + (isDouble ? "float64" : "float32"));
        }
        INDArray src = xIn.isView() || xIn.ordering() != 'c' ? xIn.dup('c') : xIn;
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

    /** A [B, T, D] view of a tensor's first B*T rows (cached while the batch size stays the same). */
    private static INDArray view(Tensor t, int batch, int seqLen, int d) {
        return t.owner().get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, (long) batch * seqLen * d))
                .reshape('c', batch, seqLen, d);
    }

    // ------------------------------------------------------------------ public passes

    /**
     * Non-last stage: the forward pass of one micro-batch (stage 0 reads the first T tokens of each window, later
     * stages {@code xIn} [B, T, D]); with {@code slot >= 0} keeps what {@link #backward} of that slot needs.
     * Returns x_out [B, T, D], valid until the slot's next forward.
     */
    @Override
    public INDArray forward(int slot, int[][] windows, INDArray xIn, DropoutKeys dropoutKeys) {
        requireNotLast("forward");
        long t0 = System.nanoTime();
        prepare(slot, windows, xIn, dropoutKeys, false);
        train = slot >= 0;
        workers.run(forwardRegion);
        clock.addForward(System.nanoTime() - t0);
        return view(act.x[blocks], batch, seqLen, d);
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
        act = slots[index];
        batch = act.batch;
        rows = batch * seqLen;
        keys = act.keys;
        bindGrads(flatGrads);
        if (batchOf(gradOut) != batch) {
            throw new IllegalArgumentException("stage " + stage + ": gradient for " + batchOf(gradOut)
                    + " sequences, the forward pass held " + batch);
        }
        copyIn(gradOut, scratch.dRes);
        workers.run(backwardRegion);
        act.batch = 0;
        clock.addBackward(System.nanoTime() - t0);
        return first ? null : gradInputView();
    }

    /**
     * Last stage: the mean next-token cross-entropy of a micro-batch (targets: tokens 1..T of each window). With
     * {@code flatGrads} non-null also the backward pass: ADDS gradScale x the gradients of that mean into
     * flatGrads, and {@link #gradInput()} then holds gradScale x dL/d(x_in) (stage 0: the embedding's gradients
     * are added instead). {@code dropoutKeys} null means no dropout.
     */
    @Override
    public double loss(int[][] windows, INDArray xIn, DropoutKeys dropoutKeys, double scale, INDArray flatGrads) {
        requireLast("loss");
        long t0 = System.nanoTime();
        prepare(-1, windows, xIn, dropoutKeys, true);
        train = flatGrads != null;
        gradScale = train ? scale / rows : Double.NaN;
        if (train) {
            bindGrads(flatGrads);
        }
        workers.run(forwardRegion);
        long t1 = System.nanoTime();
        clock.addForward(t1 - t0);
        workers.run(lossRegion);
        if (train) {
            workers.run(backwardRegion);
            clock.addBackward(System.nanoTime() - t1);
        }
        double sum = 0;
        for (int r = 0; r < rows; r++) {
            sum += scratch.losses.get(r);
        }
        return sum / rows;
    }

    /** dL/d(x_in) of the last {@link #loss} with gradients on a stage other than 0, [B, T, D]. */
    @Override
    public INDArray gradInput() {
        if (first) {
            return null;
        }
        return gradInputView();
    }

    private INDArray gradInputView() {
        if (scratch.gradInputView == null || scratch.gradInputView.size(0) != batch) {
            scratch.gradInputView = view(scratch.dRes, batch, seqLen, d);
        }
        return scratch.gradInputView;
    }

    /** Last stage: logits [B, T, V] of inputs (the first T tokens of each window), no dropout. */
    @Override
    public INDArray logits(int[][] windows, INDArray xIn) {
        requireLast("logits");
        prepare(-1, windows, xIn, null, false);
        train = false;
        workers.run(forwardRegion);
        INDArray out = org.nd4j.linalg.factory.Nd4j.create(isDouble ? org.nd4j.linalg.api.buffer.DataType.DOUBLE
                : org.nd4j.linalg.api.buffer.DataType.FLOAT, batch, seqLen, vocab);
        Tensor o = Tensor.view(out.reshape(out.length()), 0, out.length());
        Tensor in = cfg.preNorm() ? act.lnf : act.x[blocks];
        for (int r0 = 0; r0 < rows; r0 += scratch.logitRows) {
            int n = Math.min(scratch.logitRows, rows - r0);
            headForward(0, in, r0, n, o, r0 * vocab);
        }
        return out;
    }

    /** For tests: the activations of the last pass. */
    Activations lastActivations() {
        return act;
    }

    /** Time by kind of op of the passes since the last reset (off unless enabled). */
    public OpTimes opTimes() {
        return opTimes;
    }

    private void charge(Workers.Team t, OpTimes.Kind kind) {
        if (t.isLeader()) {
            opTimes.charge(kind);
        }
    }

    /** A barrier whose wait counts as such in the op times. */
    private void sync(Workers.Team t) {
        t.barrier();
        charge(t, OpTimes.Kind.BARRIER);
    }

    // ------------------------------------------------------------------ forward

    private void forwardPass(Workers.Team t) {
        int m = t.index();
        int r0 = t.from(rows);
        int r1 = t.to(rows);
        if (t.isLeader()) {
            opTimes.start();
        }
        if (first) {
            k.embed(act.tokens, params.wte, params.wpe, act.x[0], seqLen, d, r0, r1);
            if (keys != null) {
                fillMask(act.embeddingMask, DropoutMasks.EMBEDDING_LAYER, DropoutMasks.SITE_EMBEDDING,
                        (long) seqLen * d, r0 * d, r1 * d);
                k.applyMask(act.x[0], 0, act.embeddingMask, 0, keep, r0 * d, r1 * d);
            }
            charge(t, OpTimes.Kind.EMBEDDING);
        }
        for (int l = 0; l < blocks; l++) {
            Weights.Block w = params.blocks[l];
            int layer = firstBlock + l;
            Tensor x = act.x[l];
            Tensor attnIn = x;
            if (cfg.preNorm()) {
                k.layerNorm(x, w.ln1W, w.ln1B, act.norm1[l], act.mean1[l], act.rstd1[l], d, eps, r0, r1);
                attnIn = act.norm1[l];
                charge(t, OpTimes.Kind.LAYER_NORM);
            }
            linearForward(m, attnIn, w.attnW, w.attnB, act.qkv[l], d, 3 * d, r0, r1);
            charge(t, OpTimes.Kind.LINEAR_FORWARD);
            sync(t);
            int pairs = batch * heads;
            for (int p = t.from(pairs); p < t.to(pairs); p++) {
                attentionForward(m, l, layer, p / heads, p % heads);
            }
            charge(t, OpTimes.Kind.ATTENTION_FORWARD);
            sync(t);
            linearForward(m, act.attY[l], w.projW, w.projB, scratch.proj, d, d, r0, r1);
            charge(t, OpTimes.Kind.LINEAR_FORWARD);
            ByteBuffer attnMask = residualMask(act.attnMask, l, layer, DropoutMasks.SITE_ATTENTION_RESIDUAL, r0, r1);
            k.residual(x, scratch.proj, attnMask, 0, keep, act.sum1[l], r0 * d, r1 * d);
            charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
            Tensor mlpIn;
            if (cfg.preNorm()) {
                k.layerNorm(act.sum1[l], w.ln2W, w.ln2B, act.norm2OrSum2[l], act.mean2[l], act.rstd2[l], d, eps, r0, r1);
                mlpIn = act.norm2OrSum2[l];
            } else {
                k.layerNorm(act.sum1[l], w.ln1W, w.ln1B, act.norm1[l], act.mean1[l], act.rstd1[l], d, eps, r0, r1);
                mlpIn = act.norm1[l];
            }
            charge(t, OpTimes.Kind.LAYER_NORM);
            linearForward(m, mlpIn, w.fcW, w.fcB, act.fc[l], d, ff, r0, r1);
            charge(t, OpTimes.Kind.LINEAR_FORWARD);
            activation(act.fc[l], scratch.act, r0 * ff, r1 * ff);
            charge(t, OpTimes.Kind.ACTIVATION);
            linearForward(m, scratch.act, w.fc2W, w.fc2B, scratch.proj, ff, d, r0, r1);
            charge(t, OpTimes.Kind.LINEAR_FORWARD);
            ByteBuffer mlpMask = residualMask(act.mlpMask, l, layer, DropoutMasks.SITE_MLP_RESIDUAL, r0, r1);
            if (cfg.preNorm()) {
                k.residual(act.sum1[l], scratch.proj, mlpMask, 0, keep, act.x[l + 1], r0 * d, r1 * d);
                charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
            } else {
                k.residual(act.norm1[l], scratch.proj, mlpMask, 0, keep, act.norm2OrSum2[l], r0 * d, r1 * d);
                charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
                k.layerNorm(act.norm2OrSum2[l], w.ln2W, w.ln2B, act.x[l + 1], act.mean2[l], act.rstd2[l], d, eps, r0, r1);
                charge(t, OpTimes.Kind.LAYER_NORM);
            }
        }
        if (last && cfg.preNorm()) {
            k.layerNorm(act.x[blocks], params.lnfW, params.lnfB, act.lnf, act.meanF, act.rstdF, d, eps, r0, r1);
            charge(t, OpTimes.Kind.LAYER_NORM);
        }
    }

    /** The dropout mask of a residual site for rows [r0, r1) (generated during forward), or null without dropout. */
    private ByteBuffer residualMask(ByteBuffer[] masks, int l, int layer, int site, int r0, int r1) {
        if (keys == null) {
            return null;
        }
        fillMask(masks[l], layer, site, (long) seqLen * d, r0 * d, r1 * d);
        return masks[l];
    }

    private void activation(Tensor in, Tensor out, int from, int to) {
        if ("relu".equals(cfg.activation())) {
            k.relu(in, out, from, to);
        } else {
            k.gelu(in, out, from, to);
        }
    }

    private void activationBackward(Tensor in, Tensor dOut, Tensor dIn, int from, int to) {
        if ("relu".equals(cfg.activation())) {
            k.reluBackward(in, dOut, dIn, from, to);
        } else {
            k.geluBackward(in, dOut, dIn, from, to);
        }
    }

    /** out[r0:r1] = in[r0:r1] . W (+ bias): rows of [N, inF] . [inF, outF]. */
    private void linearForward(int m, Tensor in, Tensor w, Tensor bias, Tensor out, int inF, int outF, int r0, int r1) {
        if (bias != null) {
            k.fillRows(bias, out, 0, outF, r0, r1);
        }
        blas.gemm(m, false, false, r1 - r0, outF, inF, 1.0, in, r0 * inF, inF, w, 0, outF, bias != null ? 1.0 : 0.0,
                out, r0 * outF, outF);
    }

    /** Causal self-attention of one (sample, head): probabilities into att[l], the head's output into attY[l]. */
    private void attentionForward(int m, int l, int layer, int b, int h) {
        int qkvRow = 3 * d;
        int q = b * seqLen * qkvRow + h * headDim;
        int kk = q + d;
        int v = q + 2 * d;
        int p = (b * heads + h) * seqLen * seqLen;
        Tensor qkv = act.qkv[l];
        Tensor att = act.att[l];
        // causal: the rows of block [r0, r1) only need the keys [0, r1)
        for (int r0 = 0; r0 < seqLen; r0 += causalBlock) {
            int r1 = Math.min(seqLen, r0 + causalBlock);
            blas.gemm(m, false, true, r1 - r0, r1, headDim, attnScale, qkv, q + r0 * qkvRow, qkvRow, qkv, kk, qkvRow,
                    0.0, att, p + r0 * seqLen, seqLen);
        }
        k.causalSoftmax(att, p, seqLen, 0, 0, seqLen);
        Tensor probs = att;
        int probsOff = p;
        if (keys != null) {
            ByteBuffer mask = act.probsMask[l];
            fillMask(mask, layer, DropoutMasks.SITE_ATTENTION_PROBS, (long) heads * seqLen * seqLen, p, p + seqLen * seqLen);
            k.maskedCopy(att, p, mask, p, keep, scratch.probs[m], 0, seqLen * seqLen);
            probs = scratch.probs[m];
            probsOff = 0;
        }
        int y = b * seqLen * d + h * headDim;
        for (int r0 = 0; r0 < seqLen; r0 += causalBlock) {
            int r1 = Math.min(seqLen, r0 + causalBlock);
            blas.gemm(m, false, false, r1 - r0, headDim, r1, 1.0, probs, probsOff + r0 * seqLen, seqLen, qkv, v, qkvRow,
                    0.0, act.attY[l], y + r0 * d, d);
        }
    }

    /**
     * Elements [from, to) of a site's mask for the whole micro-batch (sample b owns elements [b*perSample,
     * (b+1)*perSample)): byte 1 where {@link DropoutMasks#uniform} of the sample's stream is >= p, the same rule
     * as the SameDiff path's float masks.
     */
    private void fillMask(ByteBuffer mask, int layer, int site, long perSample, long from, long to) {
        double p = cfg.dropout();
        long e = from;
        while (e < to) {
            int b = (int) (e / perSample);
            long sampleEnd = Math.min(to, (b + 1) * perSample);
            long key = DropoutMasks.streamKey(keys.seed(), keys.step(), keys.sampleIndices()[b], layer, site);
            long base = b * perSample;
            for (; e < sampleEnd; e++) {
                mask.put((int) e, DropoutMasks.uniform(key, e - base) >= p ? (byte) 1 : (byte) 0);
            }
        }
    }

    // ------------------------------------------------------------------ loss (last stage)

    /**
     * ln_f output (or the last block's) -> logits -> cross-entropy, over row chunks; with gradients the chunk's
     * logits turn into dL/dlogits in place, then dL/dhead and dL/d(head input) (into dRes) follow.
     */
    private void lossPass(Workers.Team t) {
        int m = t.index();
        Tensor in = cfg.preNorm() ? act.lnf : act.x[blocks];
        Tensor logits = scratch.logits;
        if (t.isLeader()) {
            opTimes.start();
        }
        for (int c0 = 0; c0 < rows; c0 += scratch.logitRows) {
            int n = Math.min(scratch.logitRows, rows - c0);
            int a = t.from(n);
            int z = t.to(n);
            headForward(m, in, c0 + a, z - a, logits, a * vocab);
            k.crossEntropy(logits, targetBuffer, c0, vocab, scratch.losses, gradScale, a, z);
            if (!train) {
                charge(t, OpTimes.Kind.CLASSIFIER);
                continue;
            }
            charge(t, OpTimes.Kind.CLASSIFIER);
            sync(t);
            Tensor dIn = cfg.preNorm() ? scratch.dNormA : scratch.dRes;
            if (cfg.tieEmbeddings()) {
                // dWte[V, D] += dlogits^T . in ; d(in) = dlogits . wte
                int v0 = t.from(vocab);
                int v1 = t.to(vocab);
                blas.gemm(m, true, false, v1 - v0, d, n, 1.0, logits, v0, vocab, in, c0 * d, d, 1.0, grads.head, v0 * d, d);
                blas.gemm(m, false, false, z - a, d, vocab, 1.0, logits, a * vocab, vocab, params.head, 0, d, 0.0,
                        dIn, (c0 + a) * d, d);
            } else {
                // dHead[D, V] += in^T . dlogits ; d(in) = dlogits . head^T
                int j0 = t.from(d);
                int j1 = t.to(d);
                blas.gemm(m, true, false, j1 - j0, vocab, n, 1.0, in, c0 * d + j0, d, logits, 0, vocab, 1.0,
                        grads.head, j0 * vocab, vocab);
                blas.gemm(m, false, true, z - a, d, vocab, 1.0, logits, a * vocab, vocab, params.head, 0, vocab, 0.0,
                        dIn, (c0 + a) * d, d);
            }
            charge(t, OpTimes.Kind.CLASSIFIER);
            sync(t);
        }
    }

    /** logits[offOut..] = in[r0 : r0+n] . head ([n, V]). */
    private void headForward(int m, Tensor in, int r0, int n, Tensor out, int offOut) {
        if (n <= 0) {
            return;
        }
        if (cfg.tieEmbeddings()) {
            blas.gemm(m, false, true, n, vocab, d, 1.0, in, r0 * d, d, params.head, 0, d, 0.0, out, offOut, vocab);
        } else {
            blas.gemm(m, false, false, n, vocab, d, 1.0, in, r0 * d, d, params.head, 0, vocab, 0.0, out, offOut, vocab);
        }
    }

    // ------------------------------------------------------------------ backward

    /** From dRes = dL/d(stage output) (last stage: from the loss pass) back to the input or the embeddings. */
    private void backwardPass(Workers.Team t) {
        int m = t.index();
        int r0 = t.from(rows);
        int r1 = t.to(rows);
        Tensor dRes = scratch.dRes;
        if (t.isLeader()) {
            opTimes.start();
        }
        if (last && cfg.preNorm()) {
            // dNormA holds dL/d(ln_f output); dRes = LN_f backward (fresh)
            zero(dRes, r0 * d, r1 * d);
            charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
            k.layerNormBackwardInput(scratch.dNormA, act.x[blocks], params.lnfW, act.meanF, act.rstdF, dRes, d, r0, r1);
            charge(t, OpTimes.Kind.LAYER_NORM);
            charge(t, OpTimes.Kind.LAYER_NORM);
            sync(t);
            k.layerNormBackwardParams(scratch.dNormA, act.x[blocks], act.meanF, act.rstdF, grads.lnfW, grads.lnfB,
                    rows, d, t.from(d), t.to(d));
            charge(t, OpTimes.Kind.LAYER_NORM);
        }
        for (int l = blocks - 1; l >= 0; l--) {
            if (cfg.preNorm()) {
                preNormBlockBackward(t, l, r0, r1);
            } else {
                postNormBlockBackward(t, l, r0, r1);
            }
        }
        if (first) {
            if (keys != null) {
                k.applyMask(dRes, 0, act.embeddingMask, 0, keep, r0 * d, r1 * d);
            }
            charge(t, OpTimes.Kind.EMBEDDING);
            sync(t);
            k.scatterAddRows(act.tokens, rows, dRes, grads.wte, d, t.from(vocab), t.to(vocab));
            k.sumOverBatch(dRes, grads.wpe, batch, seqLen, d, t.from(seqLen), t.to(seqLen));
            charge(t, OpTimes.Kind.EMBEDDING);
        }
    }

    private void zero(Tensor x, int from, int to) {
        k.zero(x, from, to);
    }

    /**
     * Pre-norm block backward; dRes holds dL/d(block output) and becomes dL/d(block input). The residual stream's
     * gradient passes straight through both additions; each branch adds its part.
     */
    private void preNormBlockBackward(Workers.Team t, int l, int r0, int r1) {
        int m = t.index();
        Weights.Block w = params.blocks[l];
        Weights.Block g = grads.blocks[l];
        Tensor dRes = scratch.dRes;
        // MLP branch: x' = sum1 + drop(fc2(act(fc(norm2))))
        Tensor dMlp = branchGradient(dRes, act.mlpMask, l, r0, r1);
        charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        activation(act.fc[l], scratch.act, r0 * ff, r1 * ff);
        charge(t, OpTimes.Kind.ACTIVATION);
        sync(t);
        linearBackward(t, scratch.act, dMlp, w.fc2W, g.fc2W, g.fc2B, scratch.dFc, ff, d, false);
        charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        activationBackward(act.fc[l], scratch.dFc, scratch.dFc, r0 * ff, r1 * ff);
        charge(t, OpTimes.Kind.ACTIVATION);
        sync(t);
        linearBackward(t, act.norm2OrSum2[l], scratch.dFc, w.fcW, g.fcW, g.fcB, scratch.dNormA, d, ff, false);
        charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        k.layerNormBackwardInput(scratch.dNormA, act.sum1[l], w.ln2W, act.mean2[l], act.rstd2[l], dRes, d, r0, r1);
        charge(t, OpTimes.Kind.LAYER_NORM);
        sync(t);
        k.layerNormBackwardParams(scratch.dNormA, act.sum1[l], act.mean2[l], act.rstd2[l], g.ln2W, g.ln2B, rows, d,
                t.from(d), t.to(d));
        charge(t, OpTimes.Kind.LAYER_NORM);
        // attention branch: sum1 = x + drop(proj(attn(norm1)))
        Tensor dAttn = branchGradient(dRes, act.attnMask, l, r0, r1);
        charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        sync(t);
        linearBackward(t, act.attY[l], dAttn, w.projW, g.projW, g.projB, scratch.dAttY, d, d, false);
        charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        sync(t);
        attentionBackwardAll(t, l);
        charge(t, OpTimes.Kind.ATTENTION_BACKWARD);
        sync(t);
        linearBackward(t, act.norm1[l], scratch.dQkv, w.attnW, g.attnW, g.attnB, scratch.dNormB, d, 3 * d, false);
        charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        k.layerNormBackwardInput(scratch.dNormB, act.x[l], w.ln1W, act.mean1[l], act.rstd1[l], dRes, d, r0, r1);
        charge(t, OpTimes.Kind.LAYER_NORM);
        sync(t);
        k.layerNormBackwardParams(scratch.dNormB, act.x[l], act.mean1[l], act.rstd1[l], g.ln1W, g.ln1B, rows, d,
                t.from(d), t.to(d));
        charge(t, OpTimes.Kind.LAYER_NORM);
        sync(t);
    }

    /**
     * Post-norm block backward: x' = LN2(sum2), sum2 = norm1 + drop(mlp(norm1)), norm1 = LN1(sum1),
     * sum1 = x + drop(attn(x)). dRes holds dL/dx' and becomes dL/dx.
     */
    private void postNormBlockBackward(Workers.Team t, int l, int r0, int r1) {
        int m = t.index();
        Weights.Block w = params.blocks[l];
        Weights.Block g = grads.blocks[l];
        Tensor dRes = scratch.dRes;
        Tensor dSum = scratch.dNormA;
        // dSum2 = LN2 backward of dL/dx'
        zero(dSum, r0 * d, r1 * d);
        charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        k.layerNormBackwardInput(dRes, act.norm2OrSum2[l], w.ln2W, act.mean2[l], act.rstd2[l], dSum, d, r0, r1);
        charge(t, OpTimes.Kind.LAYER_NORM);
        sync(t);
        k.layerNormBackwardParams(dRes, act.norm2OrSum2[l], act.mean2[l], act.rstd2[l], g.ln2W, g.ln2B, rows, d,
                t.from(d), t.to(d));
        charge(t, OpTimes.Kind.LAYER_NORM);
        sync(t);
        // dRes := dSum2 (the residual path into norm1); the MLP branch adds its part
        dRes.copyFrom(dSum, r0 * d, r0 * d, (r1 - r0) * d);
        charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        Tensor dMlp = branchGradient(dSum, act.mlpMask, l, r0, r1);
        charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        activation(act.fc[l], scratch.act, r0 * ff, r1 * ff);
        charge(t, OpTimes.Kind.ACTIVATION);
        sync(t);
        linearBackward(t, scratch.act, dMlp, w.fc2W, g.fc2W, g.fc2B, scratch.dFc, ff, d, false);
        charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        activationBackward(act.fc[l], scratch.dFc, scratch.dFc, r0 * ff, r1 * ff);
        charge(t, OpTimes.Kind.ACTIVATION);
        sync(t);
        linearBackward(t, act.norm1[l], scratch.dFc, w.fcW, g.fcW, g.fcB, dRes, d, ff, true);
        charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        sync(t);
        // dRes = dL/d(norm1); dSum1 = LN1 backward
        zero(scratch.dNormB, r0 * d, r1 * d);
        charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        k.layerNormBackwardInput(dRes, act.sum1[l], w.ln1W, act.mean1[l], act.rstd1[l], scratch.dNormB, d, r0, r1);
        charge(t, OpTimes.Kind.LAYER_NORM);
        sync(t);
        k.layerNormBackwardParams(dRes, act.sum1[l], act.mean1[l], act.rstd1[l], g.ln1W, g.ln1B, rows, d,
                t.from(d), t.to(d));
        charge(t, OpTimes.Kind.LAYER_NORM);
        sync(t);
        // dRes := dSum1 (the residual path into x); the attention branch adds its part
        dRes.copyFrom(scratch.dNormB, r0 * d, r0 * d, (r1 - r0) * d);
        charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        Tensor dAttn = branchGradient(scratch.dNormB, act.attnMask, l, r0, r1);
        charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        sync(t);
        linearBackward(t, act.attY[l], dAttn, w.projW, g.projW, g.projB, scratch.dAttY, d, d, false);
        charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        sync(t);
        attentionBackwardAll(t, l);
        charge(t, OpTimes.Kind.ATTENTION_BACKWARD);
        sync(t);
        linearBackward(t, act.x[l], scratch.dQkv, w.attnW, g.attnW, g.attnB, dRes, d, 3 * d, true);
        charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        sync(t);
    }

    /** The gradient entering a dropped-out residual branch: dSum itself, or dSum * mask in dBranch. */
    private Tensor branchGradient(Tensor dSum, ByteBuffer[] masks, int l, int r0, int r1) {
        if (keys == null) {
            return dSum;
        }
        k.maskedCopy(dSum, r0 * d, masks[l], r0 * d, keep, scratch.dBranch, r0 * d, (r1 - r0) * d);
        return scratch.dBranch;
    }

    /**
     * Backward of out = in . W + b for all N rows, given dOut complete for every row (the caller's barrier):
     * dW += in^T . dOut and db += column sums, split by output columns; dIn (= or += with accumulate) =
     * dOut . W^T for this member's rows. Callers barrier before anything reads another member's rows of dIn.
     */
    private void linearBackward(Workers.Team t, Tensor in, Tensor dOut, Tensor w, Tensor dW, Tensor dB, Tensor dIn,
                                int inF, int outF, boolean accumulate) {
        int m = t.index();
        int c0 = t.from(outF);
        int c1 = t.to(outF);
        blas.gemm(m, true, false, inF, c1 - c0, rows, 1.0, in, 0, inF, dOut, c0, outF, 1.0, dW, c0, outF);
        if (dB != null) {
            k.columnSums(dOut, dB, rows, outF, c0, c1);
        }
        int r0 = t.from(rows);
        int r1 = t.to(rows);
        blas.gemm(m, false, true, r1 - r0, inF, outF, 1.0, dOut, r0 * outF, outF, w, 0, outF, accumulate ? 1.0 : 0.0,
                dIn, r0 * inF, inF);
    }

    private void attentionBackwardAll(Workers.Team t, int l) {
        int pairs = batch * heads;
        for (int p = t.from(pairs); p < t.to(pairs); p++) {
            attentionBackward(t.index(), l, p / heads, p % heads);
        }
    }

    /** Backward of one (sample, head): dAttY's head columns -> dQkv's q, k, v columns of that head. */
    private void attentionBackward(int m, int l, int b, int h) {
        int qkvRow = 3 * d;
        int q = b * seqLen * qkvRow + h * headDim;
        int kk = q + d;
        int v = q + 2 * d;
        int p = (b * heads + h) * seqLen * seqLen;
        int dy = b * seqLen * d + h * headDim;
        Tensor qkv = act.qkv[l];
        Tensor att = act.att[l];
        Tensor dP = scratch.dProbs[m];
        Tensor probs = att;
        int probsOff = p;
        if (keys != null) {
            k.maskedCopy(att, p, act.probsMask[l], p, keep, scratch.probs[m], 0, seqLen * seqLen);
            probs = scratch.probs[m];
            probsOff = 0;
        }
        // d(dropped probs) = dY . V^T (row block [r0, r1): keys [0, r1)); dV = (dropped probs)^T . dY (row block
        // [c0, c1) of dV: queries [c0, T), the probabilities above the diagonal being 0)
        for (int r0 = 0; r0 < seqLen; r0 += causalBlock) {
            int r1 = Math.min(seqLen, r0 + causalBlock);
            blas.gemm(m, false, true, r1 - r0, r1, headDim, 1.0, scratch.dAttY, dy + r0 * d, d, qkv, v, qkvRow, 0.0,
                    dP, r0 * seqLen, seqLen);
            blas.gemm(m, true, false, r1 - r0, headDim, seqLen - r0, 1.0, probs, probsOff + r0 * seqLen + r0, seqLen,
                    scratch.dAttY, dy + r0 * d, d, 0.0, scratch.dQkv, v + r0 * qkvRow, qkvRow);
        }
        if (keys != null) {
            k.applyMask(dP, 0, act.probsMask[l], p, keep, 0, seqLen * seqLen);
        }
        k.causalSoftmaxBackward(att, p, dP, 0, seqLen, 0, seqLen);
        // dQ = dS . K * scale (row block: keys [0, r1)); dK = dS^T . Q * scale (row block [c0, c1): queries [c0, T))
        for (int r0 = 0; r0 < seqLen; r0 += causalBlock) {
            int r1 = Math.min(seqLen, r0 + causalBlock);
            blas.gemm(m, false, false, r1 - r0, headDim, r1, attnScale, dP, r0 * seqLen, seqLen, qkv, kk, qkvRow, 0.0,
                    scratch.dQkv, q + r0 * qkvRow, qkvRow);
            blas.gemm(m, true, false, r1 - r0, headDim, seqLen - r0, attnScale, dP, r0 * seqLen + r0, seqLen,
                    qkv, q + r0 * qkvRow, qkvRow, 0.0, scratch.dQkv, kk + r0 * qkvRow, qkvRow);
        }
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
        scratch = null;
        params = null;
        grads = null;
    }
}
