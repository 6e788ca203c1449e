package io.dtrain.model.fused;

import io.dtrain.compute.Workers;
import java.nio.ByteBuffer;

/**
 * The element-wise, normalisation, softmax and loss kernels of the fused engine, for one precision. Every kernel
 * works on a range (rows or elements {@code [from, to)}) so the {@link Workers} team can split it; a kernel never
 * allocates. Shapes: N = B*T rows, D = model width, V = vocabulary; row-major; weights [in, out].
 *
 * <p>{@link DoubleKernels} is the reference (plain loops, float64, read it first); {@link FloatKernels} computes
 * the same with the JDK Vector API in float32. Tests hold them equal to each other and to the SameDiff graph.
 */
interface Kernels {
    /** x0[n] = wte[tokens[n]] + wpe[n mod T] for rows n in [from, to). */
    void embed(int[] tokens, Tensor wte, Tensor wpe, Tensor out, int seqLen, int d, int from, int to);

    /** dWte[v] += sum of dx[n] over rows n with tokens[n] == v, for v in [vocabFrom, vocabTo) (rows in order). */
    void scatterAddRows(int[] tokens, int rows, Tensor dx, Tensor dWte, int d, int vocabFrom, int vocabTo);

    /** dWpe[t] += sum over b of dx[b*T + t] for positions t in [from, to). */
    void sumOverBatch(Tensor dx, Tensor dWpe, int batch, int seqLen, int d, int from, int to);

    /**
     * out = (x - mean) * rstd * w + b per row (b may be null), storing each row's mean and 1/sqrt(var + eps);
     * rows [from, to).
     */
    void layerNorm(Tensor x, Tensor w, Tensor b, Tensor out, Tensor mean, Tensor rstd, int d, double eps, int from, int to);

    /** dx += LayerNorm's input gradient for rows [from, to), given dOut and the stored statistics. */
    void layerNormBackwardInput(Tensor dOut, Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dx, int d, int from, int to);

    /** dw += sum over rows of dOut * xhat, db += sum over rows of dOut (db may be null), for columns [from, to). */
    void layerNormBackwardParams(Tensor dOut, Tensor x, Tensor mean, Tensor rstd, Tensor dw, Tensor db, int rows, int d,
                                 int from, int to);

    /** out[n, :] = bias for rows [from, to) of an [*, cols] matrix starting at element offOut. */
    void fillRows(Tensor bias, Tensor out, int offOut, int cols, int from, int to);

    /** db[j] += sum over rows of dy[n, j] for columns [from, to) of a [rows, cols] matrix. */
    void columnSums(Tensor dy, Tensor db, int rows, int cols, int from, int to);

    /** GELU, tanh approximation (GPT-2): out = x * sigmoid(2 c (x + 0.044715 x^3)), elements [from, to). */
    void gelu(Tensor x, Tensor out, int from, int to);

    /** dx = dOut * gelu'(x), elements [from, to) (dx may be dOut). */
    void geluBackward(Tensor x, Tensor dOut, Tensor dx, int from, int to);

    void relu(Tensor x, Tensor out, int from, int to);

    /** dx = x > 0 ? dOut : 0 (dx may be dOut). */
    void reluBackward(Tensor x, Tensor dOut, Tensor dx, int from, int to);

    /**
     * out = x + y * mask, mask = keep where the mask byte is 1, 0 where it is 0 ({@code mask} null: no dropout);
     * elements [from, to). The mask's element e is at byte maskOff + e.
     */
    void residual(Tensor x, Tensor y, ByteBuffer mask, int maskOff, double keep, Tensor out, int from, int to);

    /** y[offY + e] *= mask ? keep : 0 for e in [from, to) (dropout, forward and backward). */
    void applyMask(Tensor y, int offY, ByteBuffer mask, int maskOff, double keep, int from, int to);

    /** x[e] = 0, elements [from, to). */
    void zero(Tensor x, int from, int to);

    /** dst[e] += src[e], elements [from, to). */
    void add(Tensor src, Tensor dst, int from, int to);

    /**
     * Causal softmax in place over rows of scores at {@code off} with row stride {@code ld}: row i keeps columns
     * j <= i + shift (the rest of the row, up to ld, set to 0); rows [from, to). Training uses shift 0 on [T, T];
     * decoding with a KV cache puts the new rows after {@code shift} cached positions.
     */
    void causalSoftmax(Tensor s, int off, int ld, int shift, int from, int to);

    /**
     * Softmax backward in place for rows [from, to) of a causal [T, T] block: dp (at offDp) becomes
     * dS = p * (dp - sum_j p * dp), columns j > i set to 0.
     */
    void causalSoftmaxBackward(Tensor p, int offP, Tensor dp, int offDp, int seqLen, int from, int to);

    /** dst[offDst + e] = src[offSrc + e] * (mask ? keep : 0) for e in [0, n) (the dropped-out attention probabilities). */
    void maskedCopy(Tensor src, int offSrc, ByteBuffer mask, int maskOff, double keep, Tensor dst, int offDst, int n);

    /**
     * Cross-entropy of rows [from, to) of logits [*, V] (row r's target is targets[firstRow + r]): losses[firstRow
     * + r] = logsumexp(row) - row[target]. With {@code gradScale} finite, the row is replaced by
     * (softmax(row) - onehot(target)) * gradScale, the gradient of gradScale * loss.
     */
    void crossEntropy(Tensor logits, int[] targets, int firstRow, int vocab, Tensor losses, double gradScale, int from, int to);
}
