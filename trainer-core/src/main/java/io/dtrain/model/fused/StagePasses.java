package io.dtrain.model.fused;

import io.dtrain.compute.Workers;
import io.dtrain.config.ModelConfig;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.DropoutMasks;

import java.nio.ByteBuffer;

/**
 * The three passes of a {@link FusedStage} over one micro-batch, each run by every member of the {@link Workers}
 * team as one parallel region: forward (embedding on stage 0, the blocks, ln_f on the last stage), loss (the
 * {@link Classifier}) and backward (the blocks in reverse, then the embedding's gradients on stage 0).
 *
 * <p>Work split: row-wise ops by rows, each member's share the same range in every op, so most ops need no
 * barrier; attention by (sample, head) pairs; weight gradients (sums over rows) by output columns. A barrier sits
 * wherever an op reads what another member's share wrote.
 */
final class StagePasses {
    private final ModelConfig cfg;
    private final int firstBlock;
    private final int blocks;
    private final boolean first;
    private final boolean last;
    private final double keep;
    private final int seqLen;
    private final int d;
    private final int heads;
    private final int ff;
    private final int vocab;
    private final double eps;
    private final Workers workers;
    private final Blas blas;
    private final Kernels k;
    private final Attention attention;
    private final Classifier classifier;
    private final OpTimes ops;
    /** training.recompute: blocks: every block's activations are a shared workspace, recomputed before its backward. */
    private final boolean recompute;
    /** With recompute: whose block activations the workspace holds now, and which block (set between regions). */
    private Activations workspaceHolder;
    private int workspaceBlock;
    /** The backward region may use the last block's activations as they are (its forward just left them there). */
    private boolean lastBlockInWorkspace;
    /** training.precision: fp16: every stored activation and activation gradient is rounded to half precision. */
    private boolean half;

    // ---- arguments of the running region (set by the calling thread before Workers.run; read by every member)
    private Activations act;
    private Scratch scratch;
    private Weights params;
    private Weights grads;
    private int batch;
    private int rows;
    private DropoutKeys keys;
    private int[] targets;
    private double gradScale;
    private final Workers.Region forwardRegion = this::forwardPass;
    private final Workers.Region lossRegion = this::lossPass;
    private final Workers.Region backwardRegion = this::backwardPass;

    StagePasses(ModelConfig cfg, int stage, int numStages, int firstBlock, int endBlock, boolean recompute,
                Workers workers, OpTimes ops) {
        this.cfg = cfg;
        this.recompute = recompute;
        this.firstBlock = firstBlock;
        this.blocks = endBlock - firstBlock;
        this.first = stage == 0;
        this.last = stage == numStages - 1;
        this.keep = 1.0 / (1.0 - cfg.dropout());
        this.seqLen = cfg.seqLen();
        this.d = cfg.dModel();
        this.heads = cfg.nHead();
        this.ff = cfg.ffWidth();
        this.vocab = cfg.vocabSize();
        this.eps = cfg.layerNormEps();
        this.workers = workers;
        this.blas = new Blas(workers.size());
        this.k = cfg.isDouble() ? new DoubleKernels() : new FloatKernels();
        if (!cfg.isDouble()) {
            KernelWarmUp.floatKernels();
        }
        this.attention = new Attention(cfg, blas, k);
        this.classifier = new Classifier(cfg, blas, k, ops);
        this.ops = ops;
    }

    /** fp16 emulation: round what the passes store to half precision ({@link HalfRounding}). */
    void setHalfPrecision(boolean half) {
        this.half = half;
        attention.setHalfPrecision(half);
        classifier.setHalfPrecision(half);
    }

    /** With fp16: elements [from, to) of {@code x} rounded to half precision (this member's share of what it stored). */
    private void store(Tensor x, int from, int to) {
        if (half) {
            HalfRounding.round(x, from, to);
        }
    }

    /** With fp16: rows [r0, r1) of a [N, width] tensor rounded to half precision. */
    private void storeRows(Tensor x, int width, int r0, int r1) {
        store(x, r0 * width, r1 * width);
    }

    /** The forward pass of the micro-batch whose inputs {@code act} holds (x[0] on later stages, tokens on stage 0). */
    void forward(Activations act, Scratch scratch, Weights params, int batch, DropoutKeys keys) {
        set(act, scratch, params, null, batch, keys);
        Blas.singleThreaded();
        workers.run(forwardRegion);
        workspaceHolder = act;
        workspaceBlock = blocks - 1;
    }

    /** The loss pass after a forward pass; with {@code grads} also dL/d(head input), ready for {@link #backward}. */
    void loss(int[] targets, Weights grads, double gradScale) {
        this.targets = targets;
        this.grads = grads;
        this.gradScale = gradScale;
        workers.run(lossRegion);
    }

    /** The backward pass of the micro-batch {@code act} holds, from scratch.dRes = dL/d(stage output). */
    void backward(Activations act, Scratch scratch, Weights params, Weights grads, int batch, DropoutKeys keys) {
        set(act, scratch, params, grads, batch, keys);
        lastBlockInWorkspace = recompute && workspaceHolder == act && workspaceBlock == blocks - 1;
        Blas.singleThreaded();
        workers.run(backwardRegion);
        workspaceHolder = act;
        workspaceBlock = 0;
    }

    /** dL/dlogits and the loss' row values come from the last {@link #loss}; logits alone for generation. */
    void logits(Tensor in, int r0, int n, Tensor out, int offOut) {
        classifier.logits(0, in, r0, n, params, out, offOut);
    }

    private void set(Activations act, Scratch scratch, Weights params, Weights grads, int batch, DropoutKeys keys) {
        this.act = act;
        this.scratch = scratch;
        this.params = params;
        this.grads = grads;
        this.batch = batch;
        this.rows = batch * seqLen;
        this.keys = keys;
    }

    // ------------------------------------------------------------------ forward

    private void forwardPass(Workers.Team t) {
        int r0 = t.from(rows);
        int r1 = t.to(rows);
        ops.start(t);
        if (first) {
            k.embed(act.tokens, params.wte, params.wpe, act.x[0], seqLen, d, r0, r1);
            if (keys != null) {
                DropoutBytes.fill(act.embeddingMask, keys, cfg.dropout(), DropoutMasks.EMBEDDING_LAYER,
                        DropoutMasks.SITE_EMBEDDING, (long) seqLen * d, r0 * d, r1 * d);
                k.applyMask(act.x[0], 0, act.embeddingMask, 0, keep, r0 * d, r1 * d);
            }
            storeRows(act.x[0], d, r0, r1);
            ops.charge(t, OpTimes.Kind.EMBEDDING);
        }
        for (int l = 0; l < blocks; l++) {
            blockForward(t, l, r0, r1);
        }
        if (last && cfg.preNorm()) {
            k.layerNorm(act.x[blocks], params.lnfW, params.lnfB, act.lnf, act.meanF, act.rstdF, d, eps, r0, r1);
            storeRows(act.lnf, d, r0, r1);
            ops.charge(t, OpTimes.Kind.LAYER_NORM);
        }
    }

    /** Block l's forward pass: x[l] -> x[l + 1], its activations into act.blocks[l] (the workspace when recomputing). */
    private void blockForward(Workers.Team t, int l, int r0, int r1) {
        int m = t.index();
        Weights.Block w = params.blocks[l];
        Activations.Block b = act.blocks[l];
        int layer = firstBlock + l;
        Tensor x = act.x[l];
        Tensor attnIn = x;
        if (cfg.preNorm()) {
            k.layerNorm(x, w.ln1W, w.ln1B, b.norm1, b.mean1, b.rstd1, d, eps, r0, r1);
            storeRows(b.norm1, d, r0, r1);
            attnIn = b.norm1;
            ops.charge(t, OpTimes.Kind.LAYER_NORM);
        }
        linearForward(m, attnIn, w.attnW, w.attnB, b.qkv, d, 3 * d, r0, r1);
        ops.charge(t, OpTimes.Kind.LINEAR_FORWARD);
        ops.sync(t);
        int pairs = batch * heads;
        for (int p = t.from(pairs); p < t.to(pairs); p++) {
            attention.forward(m, act.blocks[l], scratch, layer, p / heads, p % heads, keys);
        }
        ops.charge(t, OpTimes.Kind.ATTENTION_FORWARD);
        ops.sync(t);
        storeRows(b.attY, d, r0, r1);   // only this member reads these rows before the next barrier
        linearForward(m, b.attY, w.projW, w.projB, scratch.proj, d, d, r0, r1);
        ops.charge(t, OpTimes.Kind.LINEAR_FORWARD);
        ByteBuffer attnMask = residualMask(b.attnMask, layer, DropoutMasks.SITE_ATTENTION_RESIDUAL, r0, r1);
        k.residual(x, scratch.proj, attnMask, 0, keep, b.sum1, r0 * d, r1 * d);
        storeRows(b.sum1, d, r0, r1);
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        Tensor mlpIn;
        if (cfg.preNorm()) {
            k.layerNorm(b.sum1, w.ln2W, w.ln2B, b.norm2OrSum2, b.mean2, b.rstd2, d, eps, r0, r1);
            mlpIn = b.norm2OrSum2;
        } else {
            k.layerNorm(b.sum1, w.ln1W, w.ln1B, b.norm1, b.mean1, b.rstd1, d, eps, r0, r1);
            mlpIn = b.norm1;
        }
        storeRows(mlpIn, d, r0, r1);
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        linearForward(m, mlpIn, w.fcW, w.fcB, b.fc, d, ff, r0, r1);
        ops.charge(t, OpTimes.Kind.LINEAR_FORWARD);
        activation(b.fc, scratch.act, r0 * ff, r1 * ff);
        storeRows(scratch.act, ff, r0, r1);
        ops.charge(t, OpTimes.Kind.ACTIVATION);
        linearForward(m, scratch.act, w.fc2W, w.fc2B, scratch.proj, ff, d, r0, r1);
        ops.charge(t, OpTimes.Kind.LINEAR_FORWARD);
        ByteBuffer mlpMask = residualMask(b.mlpMask, layer, DropoutMasks.SITE_MLP_RESIDUAL, r0, r1);
        if (cfg.preNorm()) {
            k.residual(b.sum1, scratch.proj, mlpMask, 0, keep, act.x[l + 1], r0 * d, r1 * d);
            storeRows(act.x[l + 1], d, r0, r1);
            ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        } else {
            k.residual(b.norm1, scratch.proj, mlpMask, 0, keep, b.norm2OrSum2, r0 * d, r1 * d);
            storeRows(b.norm2OrSum2, d, r0, r1);
            ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
            k.layerNorm(b.norm2OrSum2, w.ln2W, w.ln2B, act.x[l + 1], b.mean2, b.rstd2, d, eps, r0, r1);
            storeRows(act.x[l + 1], d, r0, r1);
            ops.charge(t, OpTimes.Kind.LAYER_NORM);
        }
    }

    /** The dropout mask of a residual site for rows [r0, r1) (generated during forward), or null without dropout. */
    private ByteBuffer residualMask(ByteBuffer mask, int layer, int site, int r0, int r1) {
        if (keys == null) {
            return null;
        }
        DropoutBytes.fill(mask, keys, cfg.dropout(), layer, site, (long) seqLen * d, r0 * d, r1 * d);
        return mask;
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
        storeRows(out, outF, r0, r1);
    }

    // ------------------------------------------------------------------ loss (last stage)

    private void lossPass(Workers.Team t) {
        Tensor in = cfg.preNorm() ? act.lnf : act.x[blocks];
        Tensor dIn = cfg.preNorm() ? scratch.dNormA : scratch.dRes;
        classifier.run(t, in, dIn, rows, targets, scratch, params, grads, grads == null ? Double.NaN : gradScale,
                grads != null);
    }

    // ------------------------------------------------------------------ backward

    /** From dRes = dL/d(stage output) (last stage: from the loss pass) back to the input or the embeddings. */
    private void backwardPass(Workers.Team t) {
        int m = t.index();
        int r0 = t.from(rows);
        int r1 = t.to(rows);
        Tensor dRes = scratch.dRes;
        ops.start(t);
        if (last) {
            storeRows(cfg.preNorm() ? scratch.dNormA : dRes, d, r0, r1);   // the classifier's d(input), this member's rows
        }
        if (last && cfg.preNorm()) {
            // dNormA holds dL/d(ln_f output); dRes = LN_f backward (fresh)
            zero(dRes, r0 * d, r1 * d);
            ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
            k.layerNormBackwardInput(scratch.dNormA, act.x[blocks], params.lnfW, act.meanF, act.rstdF, dRes, d, r0, r1);
            storeRows(dRes, d, r0, r1);
            ops.charge(t, OpTimes.Kind.LAYER_NORM);
            ops.charge(t, OpTimes.Kind.LAYER_NORM);
            ops.sync(t);
            k.layerNormBackwardParams(scratch.dNormA, act.x[blocks], act.meanF, act.rstdF, grads.lnfW, grads.lnfB,
                    rows, d, t.from(d), t.to(d));
            ops.charge(t, OpTimes.Kind.LAYER_NORM);
        }
        for (int l = blocks - 1; l >= 0; l--) {
            if (recompute && !(l == blocks - 1 && lastBlockInWorkspace)) {
                // the workspace held block l + 1's activations until that block's last barrier
                blockForward(t, l, r0, r1);
                ops.sync(t);
            }
            if (cfg.preNorm()) {
                preNormBlockBackward(t, l, r0, r1);
            } else {
                postNormBlockBackward(t, l, r0, r1);
            }
        }
        if (first) {
            if (keys != null) {
                k.applyMask(dRes, 0, act.embeddingMask, 0, keep, r0 * d, r1 * d);
                storeRows(dRes, d, r0, r1);
            }
            ops.charge(t, OpTimes.Kind.EMBEDDING);
            ops.sync(t);
            k.scatterAddRows(act.tokens, rows, dRes, grads.wte, d, t.from(vocab), t.to(vocab));
            k.sumOverBatch(dRes, grads.wpe, batch, seqLen, d, t.from(seqLen), t.to(seqLen));
            ops.charge(t, OpTimes.Kind.EMBEDDING);
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
        Tensor dMlp = branchGradient(dRes, act.blocks[l].mlpMask, r0, r1);
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        activation(act.blocks[l].fc, scratch.act, r0 * ff, r1 * ff);
        ops.charge(t, OpTimes.Kind.ACTIVATION);
        ops.sync(t);
        linearBackward(t, scratch.act, dMlp, w.fc2W, g.fc2W, g.fc2B, scratch.dFc, ff, d, false);
        ops.charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        activationBackward(act.blocks[l].fc, scratch.dFc, scratch.dFc, r0 * ff, r1 * ff);
        storeRows(scratch.dFc, ff, r0, r1);
        ops.charge(t, OpTimes.Kind.ACTIVATION);
        ops.sync(t);
        linearBackward(t, act.blocks[l].norm2OrSum2, scratch.dFc, w.fcW, g.fcW, g.fcB, scratch.dNormA, d, ff, false);
        ops.charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        k.layerNormBackwardInput(scratch.dNormA, act.blocks[l].sum1, w.ln2W, act.blocks[l].mean2, act.blocks[l].rstd2, dRes, d, r0, r1);
        storeRows(dRes, d, r0, r1);
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        ops.sync(t);
        k.layerNormBackwardParams(scratch.dNormA, act.blocks[l].sum1, act.blocks[l].mean2, act.blocks[l].rstd2, g.ln2W, g.ln2B, rows, d,
                t.from(d), t.to(d));
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        // attention branch: sum1 = x + drop(proj(attn(norm1)))
        Tensor dAttn = branchGradient(dRes, act.blocks[l].attnMask, r0, r1);
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        ops.sync(t);
        linearBackward(t, act.blocks[l].attY, dAttn, w.projW, g.projW, g.projB, scratch.dAttY, d, d, false);
        ops.charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        ops.sync(t);
        attentionBackwardAll(t, l);
        ops.charge(t, OpTimes.Kind.ATTENTION_BACKWARD);
        ops.sync(t);
        linearBackward(t, act.blocks[l].norm1, scratch.dQkv, w.attnW, g.attnW, g.attnB, scratch.dNormB, d, 3 * d, false);
        ops.charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        k.layerNormBackwardInput(scratch.dNormB, act.x[l], w.ln1W, act.blocks[l].mean1, act.blocks[l].rstd1, dRes, d, r0, r1);
        storeRows(dRes, d, r0, r1);
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        ops.sync(t);
        k.layerNormBackwardParams(scratch.dNormB, act.x[l], act.blocks[l].mean1, act.blocks[l].rstd1, g.ln1W, g.ln1B, rows, d,
                t.from(d), t.to(d));
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        ops.sync(t);
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
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        k.layerNormBackwardInput(dRes, act.blocks[l].norm2OrSum2, w.ln2W, act.blocks[l].mean2, act.blocks[l].rstd2, dSum, d, r0, r1);
        storeRows(dSum, d, r0, r1);
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        ops.sync(t);
        k.layerNormBackwardParams(dRes, act.blocks[l].norm2OrSum2, act.blocks[l].mean2, act.blocks[l].rstd2, g.ln2W, g.ln2B, rows, d,
                t.from(d), t.to(d));
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        ops.sync(t);
        // dRes := dSum2 (the residual path into norm1); the MLP branch adds its part
        dRes.copyFrom(dSum, r0 * d, r0 * d, (r1 - r0) * d);
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        Tensor dMlp = branchGradient(dSum, act.blocks[l].mlpMask, r0, r1);
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        activation(act.blocks[l].fc, scratch.act, r0 * ff, r1 * ff);
        ops.charge(t, OpTimes.Kind.ACTIVATION);
        ops.sync(t);
        linearBackward(t, scratch.act, dMlp, w.fc2W, g.fc2W, g.fc2B, scratch.dFc, ff, d, false);
        ops.charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        activationBackward(act.blocks[l].fc, scratch.dFc, scratch.dFc, r0 * ff, r1 * ff);
        storeRows(scratch.dFc, ff, r0, r1);
        ops.charge(t, OpTimes.Kind.ACTIVATION);
        ops.sync(t);
        linearBackward(t, act.blocks[l].norm1, scratch.dFc, w.fcW, g.fcW, g.fcB, dRes, d, ff, true);
        ops.charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        ops.sync(t);
        // dRes = dL/d(norm1); dSum1 = LN1 backward
        zero(scratch.dNormB, r0 * d, r1 * d);
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        k.layerNormBackwardInput(dRes, act.blocks[l].sum1, w.ln1W, act.blocks[l].mean1, act.blocks[l].rstd1, scratch.dNormB, d, r0, r1);
        storeRows(scratch.dNormB, d, r0, r1);
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        ops.sync(t);
        k.layerNormBackwardParams(dRes, act.blocks[l].sum1, act.blocks[l].mean1, act.blocks[l].rstd1, g.ln1W, g.ln1B, rows, d,
                t.from(d), t.to(d));
        ops.charge(t, OpTimes.Kind.LAYER_NORM);
        ops.sync(t);
        // dRes := dSum1 (the residual path into x); the attention branch adds its part
        dRes.copyFrom(scratch.dNormB, r0 * d, r0 * d, (r1 - r0) * d);
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        Tensor dAttn = branchGradient(scratch.dNormB, act.blocks[l].attnMask, r0, r1);
        ops.charge(t, OpTimes.Kind.RESIDUAL_DROPOUT);
        ops.sync(t);
        linearBackward(t, act.blocks[l].attY, dAttn, w.projW, g.projW, g.projB, scratch.dAttY, d, d, false);
        ops.charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        ops.sync(t);
        attentionBackwardAll(t, l);
        ops.charge(t, OpTimes.Kind.ATTENTION_BACKWARD);
        ops.sync(t);
        linearBackward(t, act.x[l], scratch.dQkv, w.attnW, g.attnW, g.attnB, dRes, d, 3 * d, true);
        ops.charge(t, OpTimes.Kind.LINEAR_BACKWARD);
        ops.sync(t);
    }

    /** The gradient entering a dropped-out residual branch: dSum itself, or dSum * mask in dBranch. */
    private Tensor branchGradient(Tensor dSum, ByteBuffer mask, int r0, int r1) {
        if (keys == null) {
            return dSum;
        }
        k.maskedCopy(dSum, r0 * d, mask, r0 * d, keep, scratch.dBranch, r0 * d, (r1 - r0) * d);
        storeRows(scratch.dBranch, d, r0, r1);
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
        storeRows(dIn, inF, r0, r1);
    }

    private void attentionBackwardAll(Workers.Team t, int l) {
        int pairs = batch * heads;
        for (int p = t.from(pairs); p < t.to(pairs); p++) {
            attention.backward(t.index(), act.blocks[l], scratch, p / heads, p % heads, keys != null);
        }
        if (half) {
            // dQkv is written by (sample, head) but rounded by rows: every member's pairs must be done first
            ops.sync(t);
            storeRows(scratch.dQkv, 3 * d, t.from(rows), t.to(rows));
        }
    }
}
