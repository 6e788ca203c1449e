package io.dtrain.model.fused;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.ParamLayout;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Incremental decoding of one sequence with a key/value cache: {@link #append} runs only the new tokens through
 * the model, their attention reading the cached keys and values of every earlier position, and returns the logits
 * of the last one. The same kernels and the same arithmetic as {@link FusedStage}'s forward pass, one sequence,
 * single-threaded (a new token is a few GEMVs; the prompt is one batch of rows).
 *
 * <p>Positions are absolute (learned position embeddings), so the cache holds at most seq_len positions; a
 * caller that slides its context window past seq_len starts over with {@link #reset} (as the cache-free path
 * recomputes the cropped window).
 */
public final class KvCacheDecoder {
    private final ModelConfig cfg;
    private final Weights w;
    private final Kernels k;
    private final Blas blas;
    private final int d;
    private final int heads;
    private final int headDim;
    private final int ff;
    private final int vocab;
    private final int maxLen;
    private final double eps;
    private final double attnScale;
    /** Per block: keys and values of every cached position, [maxLen, D] each. */
    private final Tensor[] keys;
    private final Tensor[] values;
    // per call, for up to maxLen new rows
    private final Tensor x;
    private final Tensor norm;
    private final Tensor mean;
    private final Tensor rstd;
    private final Tensor qkv;
    private final Tensor scores;
    private final Tensor attY;
    private final Tensor proj;
    private final Tensor fc;
    private final Tensor act;
    private final Tensor logits;
    private final int[] tokens;
    private int length;

    /** Reads the parameters in place from {@code flatParams}, laid out by {@code layout} (the whole model's). */
    public KvCacheDecoder(ModelConfig cfg, ParamLayout layout, INDArray flatParams) {
        this.cfg = cfg;
        this.w = new Weights(cfg, layout, flatParams, true, true, 0, cfg.nLayer());
        boolean isDouble = cfg.isDouble();
        this.k = isDouble ? new DoubleKernels() : new FloatKernels();
        this.blas = new Blas(1);
        this.d = cfg.dModel();
        this.heads = cfg.nHead();
        this.headDim = cfg.headDim();
        this.ff = cfg.ffWidth();
        this.vocab = cfg.vocabSize();
        this.maxLen = cfg.seqLen();
        this.eps = cfg.layerNormEps();
        this.attnScale = 1.0 / Math.sqrt(headDim);
        this.keys = new Tensor[cfg.nLayer()];
        this.values = new Tensor[cfg.nLayer()];
        for (int l = 0; l < keys.length; l++) {
            keys[l] = Tensor.allocate(isDouble, (long) maxLen * d);
            values[l] = Tensor.allocate(isDouble, (long) maxLen * d);
        }
        long rows = maxLen;
        x = Tensor.allocate(isDouble, rows * d);
        norm = Tensor.allocate(isDouble, rows * d);
        mean = Tensor.allocate(isDouble, rows);
        rstd = Tensor.allocate(isDouble, rows);
        qkv = Tensor.allocate(isDouble, rows * 3 * d);
        scores = Tensor.allocate(isDouble, rows * maxLen);
        attY = Tensor.allocate(isDouble, rows * d);
        proj = Tensor.allocate(isDouble, rows * d);
        fc = Tensor.allocate(isDouble, rows * ff);
        act = Tensor.allocate(isDouble, rows * ff);
        logits = Tensor.allocate(isDouble, vocab);
        tokens = new int[maxLen];
    }

    /** Positions cached so far. */
    public int length() {
        return length;
    }

    /** Forgets every cached position. */
    public void reset() {
        length = 0;
    }

    /**
     * Runs {@code newTokens} (at positions length .. length + n - 1) through the model, caching their keys and
     * values; returns the logits of the last of them.
     */
    public double[] append(int[] newTokens) {
        int n = newTokens.length;
        if (n == 0) {
            throw new IllegalArgumentException("nothing to append");
        }
        if (length + n > maxLen) {
            throw new IllegalArgumentException("the cache holds " + length + " of model.seq_len=" + maxLen
                    + " positions; " + n + " more do not fit (reset and start from a cropped context)");
        }
        int start = length;
        Blas.singleThreaded();
        for (int i = 0; i < n; i++) {
            int tok = newTokens[i];
            if (tok < 0 || tok >= vocab) {
                throw new IllegalArgumentException("token " + tok + " is outside [0, model.vocab_size=" + vocab + ")");
            }
            // embed() reads position (row mod seqLen): index rows by absolute position, rows [start, start + n)
            tokens[start + i] = tok;
        }
        k.embed(tokens, w.wte, w.wpe, x, maxLen, d, start, start + n);
        // the working rows live at [start, start + n) of each [maxLen, *] buffer
        for (int l = 0; l < keys.length; l++) {
            block(l, start, n);
        }
        Tensor out = x;
        if (cfg.preNorm()) {
            k.layerNorm(x, w.lnfW, w.lnfB, norm, mean, rstd, d, eps, start + n - 1, start + n);
            out = norm;
        }
        int last = start + n - 1;
        if (cfg.tieEmbeddings()) {
            blas.gemm(0, false, true, 1, vocab, d, 1.0, out, last * d, d, w.head, 0, d, 0.0, logits, 0, vocab);
        } else {
            blas.gemm(0, false, false, 1, vocab, d, 1.0, out, last * d, d, w.head, 0, vocab, 0.0, logits, 0, vocab);
        }
        length = start + n;
        double[] row = new double[vocab];
        for (int v = 0; v < vocab; v++) {
            row[v] = logits.get(v);
        }
        return row;
    }

    private void block(int l, int start, int n) {
        Weights.Block b = w.blocks[l];
        int r0 = start;
        int r1 = start + n;
        Tensor attnIn = x;
        if (cfg.preNorm()) {
            k.layerNorm(x, b.ln1W, b.ln1B, norm, mean, rstd, d, eps, r0, r1);
            attnIn = norm;
        }
        linear(attnIn, b.attnW, b.attnB, qkv, d, 3 * d, r0, r1);
        // cache this call's keys and values (columns D..2D and 2D..3D of qkv) by position
        for (int r = r0; r < r1; r++) {
            keys[l].copyFrom(qkv, r * 3 * d + d, r * d, d);
            values[l].copyFrom(qkv, r * 3 * d + 2 * d, r * d, d);
        }
        for (int h = 0; h < heads; h++) {
            int col = h * headDim;
            // scores[i, j] = q_i . k_j * scale for the new rows i and positions j < r1, causal with shift start
            blas.gemm(0, false, true, n, r1, headDim, attnScale, qkv, r0 * 3 * d + col, 3 * d, keys[l], col, d, 0.0,
                    scores, 0, maxLen);
            k.causalSoftmax(scores, 0, maxLen, start, 0, n);
            blas.gemm(0, false, false, n, headDim, r1, 1.0, scores, 0, maxLen, values[l], col, d, 0.0,
                    attY, r0 * d + col, d);
        }
        linear(attY, b.projW, b.projB, proj, d, d, r0, r1);
        Tensor sum1 = attY; // attY is consumed: reuse it for the residual stream after attention
        k.residual(x, proj, null, 0, 1.0, sum1, r0 * d, r1 * d);
        Tensor mlpIn;
        if (cfg.preNorm()) {
            k.layerNorm(sum1, b.ln2W, b.ln2B, norm, mean, rstd, d, eps, r0, r1);
            mlpIn = norm;
        } else {
            k.layerNorm(sum1, b.ln1W, b.ln1B, norm, mean, rstd, d, eps, r0, r1);
            mlpIn = norm;
        }
        linear(mlpIn, b.fcW, b.fcB, fc, d, ff, r0, r1);
        if ("relu".equals(cfg.activation())) {
            k.relu(fc, act, r0 * ff, r1 * ff);
        } else {
            k.gelu(fc, act, r0 * ff, r1 * ff);
        }
        linear(act, b.fc2W, b.fc2B, proj, ff, d, r0, r1);
        if (cfg.preNorm()) {
            k.residual(sum1, proj, null, 0, 1.0, x, r0 * d, r1 * d);
        } else {
            k.residual(norm, proj, null, 0, 1.0, sum1, r0 * d, r1 * d);
            k.layerNorm(sum1, b.ln2W, b.ln2B, x, mean, rstd, d, eps, r0, r1);
        }
    }

    private void linear(Tensor in, Tensor weight, Tensor bias, Tensor out, int inF, int outF, int r0, int r1) {
        if (bias != null) {
            k.fillRows(bias, out, 0, outF, r0, r1);
        }
        blas.gemm(0, false, false, r1 - r0, outF, inF, 1.0, in, r0 * inF, inF, weight, 0, outF, bias != null ? 1.0 : 0.0,
                out, r0 * outF, outF);
    }
}
