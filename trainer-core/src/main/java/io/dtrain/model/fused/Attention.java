package io.dtrain.model.fused;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.DropoutMasks;

import java.nio.ByteBuffer;

/**
 * Causal self-attention of one (sample b, head h), forward and backward: the head's q, k and v are columns of the
 * packed qkv activations [N, 3D] (used in place through BLAS leading dimensions), its probabilities a [T, T] block
 * of att[l] at ((b*H + h) * T*T), its output columns h*hd.. of attY [N, D]. The products run over query row blocks
 * that multiply only the keys up to the block's end: the masked upper triangle is never computed (about 40% fewer
 * flops than the square products at T = 256).
 *
 * <p>fp16: the scores, the probabilities, dL/d(probabilities) and dL/d(scores) are rounded to half precision, as an
 * unfused GPU attention stores them (its batched GEMMs write fp16, its softmax reads and writes fp16 with fp32
 * arithmetic inside); the softmax backward reads the stored (rounded) probabilities.
 */
final class Attention {
    private final Blas blas;
    private final Kernels k;
    private final int seqLen;
    private final int d;
    private final int heads;
    private final int headDim;
    private final double attnScale;
    private final double dropout;
    private final double keep;
    /** Query rows per product: a row block needs only the keys up to its end. */
    private final int causalBlock;
    private boolean half;

    Attention(ModelConfig cfg, Blas blas, Kernels k) {
        this.blas = blas;
        this.k = k;
        this.seqLen = cfg.seqLen();
        this.d = cfg.dModel();
        this.heads = cfg.nHead();
        this.headDim = cfg.headDim();
        this.attnScale = 1.0 / Math.sqrt(headDim);
        this.dropout = cfg.dropout();
        this.keep = 1.0 / (1.0 - cfg.dropout());
        this.causalBlock = Math.max(32, Math.min(128, seqLen / 8));
    }

    void setHalfPrecision(boolean half) {
        this.half = half;
    }

    /** With fp16: the causal (lower) triangle of the [T, T] block at {@code off}, rounded to half precision. */
    private void store(Tensor t, int off) {
        if (half) {
            for (int i = 0; i < seqLen; i++) {
                HalfRounding.round(t, off + i * seqLen, off + i * seqLen + i + 1);
            }
        }
    }

    /** Probabilities into att[l] (dropout mask generated when {@code keys} is set), the head's output into attY[l]. */
    void forward(int m, Activations.Block blk, Scratch scratch, int layer, int b, int h, DropoutKeys keys) {
        int qkvRow = 3 * d;
        int q = b * seqLen * qkvRow + h * headDim;
        int kk = q + d;
        int v = q + 2 * d;
        int p = (b * heads + h) * seqLen * seqLen;
        Tensor qkv = blk.qkv;
        Tensor att = blk.att;
        // causal: the rows of block [r0, r1) only need the keys [0, r1)
        for (int r0 = 0; r0 < seqLen; r0 += causalBlock) {
            int r1 = Math.min(seqLen, r0 + causalBlock);
            blas.gemm(m, false, true, r1 - r0, r1, headDim, attnScale, qkv, q + r0 * qkvRow, qkvRow, qkv, kk, qkvRow,
                    0.0, att, p + r0 * seqLen, seqLen);
        }
        store(att, p);
        k.causalSoftmax(att, p, seqLen, 0, 0, seqLen);
        store(att, p);
        Tensor probs = att;
        int probsOff = p;
        if (keys != null) {
            ByteBuffer mask = blk.probsMask;
            DropoutBytes.fill(mask, keys, dropout, layer, DropoutMasks.SITE_ATTENTION_PROBS, (long) heads * seqLen * seqLen,
                    p, p + seqLen * seqLen);
            k.maskedCopy(att, p, mask, p, keep, scratch.probs[m], 0, seqLen * seqLen);
            probs = scratch.probs[m];
            probsOff = 0;
        }
        int y = b * seqLen * d + h * headDim;
        for (int r0 = 0; r0 < seqLen; r0 += causalBlock) {
            int r1 = Math.min(seqLen, r0 + causalBlock);
            blas.gemm(m, false, false, r1 - r0, headDim, r1, 1.0, probs, probsOff + r0 * seqLen, seqLen, qkv, v, qkvRow,
                    0.0, blk.attY, y + r0 * d, d);
        }
    }

    /** Backward of one (sample, head): dAttY's head columns -> dQkv's q, k, v columns of that head. */
    void backward(int m, Activations.Block blk, Scratch scratch, int b, int h, boolean withDropout) {
        int qkvRow = 3 * d;
        int q = b * seqLen * qkvRow + h * headDim;
        int kk = q + d;
        int v = q + 2 * d;
        int p = (b * heads + h) * seqLen * seqLen;
        int dy = b * seqLen * d + h * headDim;
        Tensor qkv = blk.qkv;
        Tensor att = blk.att;
        Tensor dP = scratch.dProbs[m];
        Tensor probs = att;
        int probsOff = p;
        if (withDropout) {
            k.maskedCopy(att, p, blk.probsMask, p, keep, scratch.probs[m], 0, seqLen * seqLen);
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
        if (withDropout) {
            k.applyMask(dP, 0, blk.probsMask, p, keep, 0, seqLen * seqLen);
        }
        store(dP, 0);
        k.causalSoftmaxBackward(att, p, dP, 0, seqLen, 0, seqLen);
        store(dP, 0);
        // dQ = dS . K * scale (row block: keys [0, r1)); dK = dS^T . Q * scale (row block [c0, c1): queries [c0, T))
        for (int r0 = 0; r0 < seqLen; r0 += causalBlock) {
            int r1 = Math.min(seqLen, r0 + causalBlock);
            blas.gemm(m, false, false, r1 - r0, headDim, r1, attnScale, dP, r0 * seqLen, seqLen, qkv, kk, qkvRow, 0.0,
                    scratch.dQkv, q + r0 * qkvRow, qkvRow);
            blas.gemm(m, true, false, r1 - r0, headDim, seqLen - r0, attnScale, dP, r0 * seqLen + r0, seqLen,
                    qkv, q + r0 * qkvRow, qkvRow, 0.0, scratch.dQkv, kk + r0 * qkvRow, qkvRow);
        }
    }
}
