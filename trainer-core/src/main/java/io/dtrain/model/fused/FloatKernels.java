package io.dtrain.model.fused;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The kernels in float32, vectorised with the JDK Vector API over the tensors' direct buffers: the same formulas
 * as {@link DoubleKernels}, lane by lane, with a scalar tail. Reductions (LayerNorm statistics, softmax sums)
 * accumulate in float32 lanes, as PyTorch's CPU kernels do.
 */
final class FloatKernels implements Kernels {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** Bytes with as many lanes as F, for dropout masks. */
    private static final VectorSpecies<Byte> MASK = VectorSpecies.of(byte.class, VectorShape.forBitSize(L * 8));
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final FloatVector ONE = FloatVector.broadcast(F, 1f);
    /** 0, 1, ..., L-1 as floats. */
    private static final FloatVector IOTA = iota();
    private static final float GELU_A = (float) (2.0 * Math.sqrt(2.0 / Math.PI));
    private static final float GELU_B = (float) (2.0 * Math.sqrt(2.0 / Math.PI) * 0.044715);

    private static FloatVector load(Tensor t, int i) {
        return FloatVector.fromByteBuffer(F, t.bytes, i << 2, NATIVE);
    }

    private static void store(FloatVector v, Tensor t, int i) {
        v.intoByteBuffer(t.bytes, i << 2, NATIVE);
    }

    private static float get(Tensor t, int i) {
        return t.bytes.getFloat(i << 2);
    }

    private static void put(Tensor t, int i, float v) {
        t.bytes.putFloat(i << 2, v);
    }

    /** 0/1 mask bytes at maskOff + e as floats. */
    private static FloatVector maskLanes(ByteBuffer mask, int at) {
        return (FloatVector) ByteVector.fromByteBuffer(MASK, mask, at, NATIVE).castShape(F, 0);
    }

    /** dst[i..i+n) += src[j..j+n). */
    private static void addRow(Tensor src, int j, Tensor dst, int i, int n) {
        int k = 0;
        for (; k + L <= n; k += L) {
            store(load(dst, i + k).add(load(src, j + k)), dst, i + k);
        }
        for (; k < n; k++) {
            put(dst, i + k, get(dst, i + k) + get(src, j + k));
        }
    }

    @Override
    public void embed(int[] tokens, Tensor wte, Tensor wpe, Tensor out, int seqLen, int d, int from, int to) {
        for (int n = from; n < to; n++) {
            int tok = tokens[n] * d;
            int pos = (n % seqLen) * d;
            int o = n * d;
            int j = 0;
            for (; j + L <= d; j += L) {
                store(load(wte, tok + j).add(load(wpe, pos + j)), out, o + j);
            }
            for (; j < d; j++) {
                put(out, o + j, get(wte, tok + j) + get(wpe, pos + j));
            }
        }
    }

    @Override
    public void scatterAddRows(int[] tokens, int rows, Tensor dx, Tensor dWte, int d, int vocabFrom, int vocabTo) {
        for (int n = 0; n < rows; n++) {
            int v = tokens[n];
            if (v >= vocabFrom && v < vocabTo) {
                addRow(dx, n * d, dWte, v * d, d);
            }
        }
    }

    @Override
    public void sumOverBatch(Tensor dx, Tensor dWpe, int batch, int seqLen, int d, int from, int to) {
        for (int t = from; t < to; t++) {
            for (int b = 0; b < batch; b++) {
                addRow(dx, (b * seqLen + t) * d, dWpe, t * d, d);
            }
        }
    }

    @Override
    public void layerNorm(Tensor x, Tensor w, Tensor b, Tensor out, Tensor mean, Tensor rstd, int d, double eps, int from, int to) {
        for (int n = from; n < to; n++) {
            int o = n * d;
            FloatVector acc = FloatVector.zero(F);
            int j = 0;
            for (; j + L <= d; j += L) {
                acc = acc.add(load(x, o + j));
            }
            float sum = acc.reduceLanes(VectorOperators.ADD);
            for (; j < d; j++) {
                sum += get(x, o + j);
            }
            float mu = sum / d;
            FloatVector muV = FloatVector.broadcast(F, mu);
            acc = FloatVector.zero(F);
            for (j = 0; j + L <= d; j += L) {
                FloatVector c = load(x, o + j).sub(muV);
                acc = c.fma(c, acc);
            }
            float sq = acc.reduceLanes(VectorOperators.ADD);
            for (; j < d; j++) {
                float c = get(x, o + j) - mu;
                sq += c * c;
            }
            float rs = (float) (1.0 / Math.sqrt(sq / d + eps));
            FloatVector rsV = FloatVector.broadcast(F, rs);
            for (j = 0; j + L <= d; j += L) {
                FloatVector y = load(x, o + j).sub(muV).mul(rsV).mul(load(w, j));
                store(b == null ? y : y.add(load(b, j)), out, o + j);
            }
            for (; j < d; j++) {
                float y = (get(x, o + j) - mu) * rs * get(w, j);
                put(out, o + j, b == null ? y : y + get(b, j));
            }
            put(mean, n, mu);
            put(rstd, n, rs);
        }
    }

    @Override
    public void layerNormBackwardInput(Tensor dOut, Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dx, int d, int from, int to) {
        for (int n = from; n < to; n++) {
            int o = n * d;
            float mu = get(mean, n);
            float rs = get(rstd, n);
            FloatVector muV = FloatVector.broadcast(F, mu);
            FloatVector rsV = FloatVector.broadcast(F, rs);
            FloatVector accG = FloatVector.zero(F);
            FloatVector accGx = FloatVector.zero(F);
            int j = 0;
            for (; j + L <= d; j += L) {
                FloatVector g = load(dOut, o + j).mul(load(w, j));
                FloatVector xh = load(x, o + j).sub(muV).mul(rsV);
                accG = accG.add(g);
                accGx = g.fma(xh, accGx);
            }
            float meanG = accG.reduceLanes(VectorOperators.ADD);
            float meanGx = accGx.reduceLanes(VectorOperators.ADD);
            for (; j < d; j++) {
                float g = get(dOut, o + j) * get(w, j);
                float xh = (get(x, o + j) - mu) * rs;
                meanG += g;
                meanGx += g * xh;
            }
            meanG /= d;
            meanGx /= d;
            FloatVector mgV = FloatVector.broadcast(F, meanG);
            FloatVector mgxV = FloatVector.broadcast(F, meanGx);
            for (j = 0; j + L <= d; j += L) {
                FloatVector g = load(dOut, o + j).mul(load(w, j));
                FloatVector xh = load(x, o + j).sub(muV).mul(rsV);
                FloatVector r = g.sub(mgV).sub(xh.mul(mgxV)).mul(rsV);
                store(load(dx, o + j).add(r), dx, o + j);
            }
            for (; j < d; j++) {
                float g = get(dOut, o + j) * get(w, j);
                float xh = (get(x, o + j) - mu) * rs;
                put(dx, o + j, get(dx, o + j) + rs * (g - meanG - xh * meanGx));
            }
        }
    }

    @Override
    public void layerNormBackwardParams(Tensor dOut, Tensor x, Tensor mean, Tensor rstd, Tensor dw, Tensor db, int rows, int d,
                                        int from, int to) {
        int j = from;
        for (; j + L <= to; j += L) {
            FloatVector sw = FloatVector.zero(F);
            FloatVector sb = FloatVector.zero(F);
            for (int n = 0; n < rows; n++) {
                FloatVector g = load(dOut, n * d + j);
                FloatVector xh = load(x, n * d + j).sub(get(mean, n)).mul(get(rstd, n));
                sw = g.fma(xh, sw);
                sb = sb.add(g);
            }
            store(load(dw, j).add(sw), dw, j);
            if (db != null) {
                store(load(db, j).add(sb), db, j);
            }
        }
        for (; j < to; j++) {
            float sw = 0;
            float sb = 0;
            for (int n = 0; n < rows; n++) {
                float g = get(dOut, n * d + j);
                sw += g * (get(x, n * d + j) - get(mean, n)) * get(rstd, n);
                sb += g;
            }
            put(dw, j, get(dw, j) + sw);
            if (db != null) {
                put(db, j, get(db, j) + sb);
            }
        }
    }

    @Override
    public void fillRows(Tensor bias, Tensor out, int offOut, int cols, int from, int to) {
        for (int n = from; n < to; n++) {
            out.copyFrom(bias, 0, offOut + n * cols, cols);
        }
    }

    @Override
    public void columnSums(Tensor dy, Tensor db, int rows, int cols, int from, int to) {
        int j = from;
        for (; j + L <= to; j += L) {
            FloatVector s = FloatVector.zero(F);
            for (int n = 0; n < rows; n++) {
                s = s.add(load(dy, n * cols + j));
            }
            store(load(db, j).add(s), db, j);
        }
        for (; j < to; j++) {
            float s = 0;
            for (int n = 0; n < rows; n++) {
                s += get(dy, n * cols + j);
            }
            put(db, j, get(db, j) + s);
        }
    }

    private static FloatVector sigmoidArg(FloatVector v) {
        return v.mul(v.mul(v).mul(GELU_B).add(GELU_A));
    }

    @Override
    public void gelu(Tensor x, Tensor out, int from, int to) {
        int e = from;
        for (; e + L <= to; e += L) {
            FloatVector v = load(x, e);
            FloatVector z = sigmoidArg(v);
            store(v.div(z.neg().lanewise(VectorOperators.EXP).add(1f)), out, e);
        }
        for (; e < to; e++) {
            float v = get(x, e);
            float z = v * (GELU_A + GELU_B * v * v);
            put(out, e, (float) (v / (1.0 + Math.exp(-z))));
        }
    }

    @Override
    public void geluBackward(Tensor x, Tensor dOut, Tensor dx, int from, int to) {
        int e = from;
        for (; e + L <= to; e += L) {
            FloatVector v = load(x, e);
            FloatVector v2 = v.mul(v);
            FloatVector s = ONE.div(sigmoidArg(v).neg().lanewise(VectorOperators.EXP).add(1f));
            FloatVector slope = v2.mul(3f * GELU_B).add(GELU_A);
            FloatVector grad = s.add(v.mul(s).mul(s.neg().add(1f)).mul(slope));
            store(load(dOut, e).mul(grad), dx, e);
        }
        for (; e < to; e++) {
            float v = get(x, e);
            float s = (float) (1.0 / (1.0 + Math.exp(-(v * (GELU_A + GELU_B * v * v)))));
            float grad = s + v * s * (1f - s) * (GELU_A + 3f * GELU_B * v * v);
            put(dx, e, get(dOut, e) * grad);
        }
    }

    @Override
    public void relu(Tensor x, Tensor out, int from, int to) {
        int e = from;
        for (; e + L <= to; e += L) {
            store(load(x, e).max(0f), out, e);
        }
        for (; e < to; e++) {
            put(out, e, Math.max(0f, get(x, e)));
        }
    }

    @Override
    public void reluBackward(Tensor x, Tensor dOut, Tensor dx, int from, int to) {
        int e = from;
        for (; e + L <= to; e += L) {
            FloatVector g = load(dOut, e);
            store(g.blend(0f, load(x, e).compare(VectorOperators.LE, 0f)), dx, e);
        }
        for (; e < to; e++) {
            put(dx, e, get(x, e) > 0 ? get(dOut, e) : 0f);
        }
    }

    @Override
    public void residual(Tensor x, Tensor y, ByteBuffer mask, int maskOff, double keep, Tensor out, int from, int to) {
        int e = from;
        if (mask == null) {
            for (; e + L <= to; e += L) {
                store(load(x, e).add(load(y, e)), out, e);
            }
            for (; e < to; e++) {
                put(out, e, get(x, e) + get(y, e));
            }
            return;
        }
        float k = (float) keep;
        for (; e + L <= to; e += L) {
            FloatVector m = maskLanes(mask, maskOff + e).mul(k);
            store(load(y, e).fma(m, load(x, e)), out, e);
        }
        for (; e < to; e++) {
            put(out, e, get(x, e) + get(y, e) * (mask.get(maskOff + e) != 0 ? k : 0f));
        }
    }

    @Override
    public void applyMask(Tensor y, int offY, ByteBuffer mask, int maskOff, double keep, int from, int to) {
        float k = (float) keep;
        int e = from;
        for (; e + L <= to; e += L) {
            store(load(y, offY + e).mul(maskLanes(mask, maskOff + e).mul(k)), y, offY + e);
        }
        for (; e < to; e++) {
            put(y, offY + e, mask.get(maskOff + e) != 0 ? get(y, offY + e) * k : 0f);
        }
    }

    @Override
    public void zero(Tensor x, int from, int to) {
        zeroRun(x, from, to - from);
    }

    @Override
    public void add(Tensor src, Tensor dst, int from, int to) {
        addRow(src, from, dst, from, to - from);
    }

    @Override
    public void causalSoftmax(Tensor s, int off, int ld, int shift, int from, int to) {
        for (int i = from; i < to; i++) {
            int row = off + i * ld;
            int n = i + shift + 1;
            // whole vectors cover [0, nv); the masked last vector (lanes >= n read as -inf, so exp gives 0) covers
            // the rest when it fits in the row, else a scalar tail does
            int nv = Math.min(((n + L - 1) / L) * L, (ld / L) * L);
            FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            int j = 0;
            for (; j < nv; j += L) {
                mx = mx.max(maskedRow(s, row + j, n - j));
            }
            float max = mx.reduceLanes(VectorOperators.MAX);
            for (int r = nv; r < n; r++) {
                max = Math.max(max, get(s, row + r));
            }
            FloatVector maxV = FloatVector.broadcast(F, max);
            FloatVector acc = FloatVector.zero(F);
            for (j = 0; j < nv; j += L) {
                FloatVector e = maskedRow(s, row + j, n - j).sub(maxV).lanewise(VectorOperators.EXP);
                store(e, s, row + j);
                acc = acc.add(e);
            }
            float sum = acc.reduceLanes(VectorOperators.ADD);
            for (int r = nv; r < n; r++) {
                float e = (float) Math.exp(get(s, row + r) - max);
                put(s, row + r, e);
                sum += e;
            }
            float inv = 1f / sum;
            for (j = 0; j < nv; j += L) {
                store(load(s, row + j).mul(inv), s, row + j);
            }
            for (int r = nv; r < n; r++) {
                put(s, row + r, get(s, row + r) * inv);
            }
            int done = Math.max(n, nv);
            zeroRun(s, row + done, ld - done);
        }
    }

    private static FloatVector iota() {
        float[] lanes = new float[L];
        for (int i = 0; i < L; i++) {
            lanes[i] = i;
        }
        return FloatVector.fromArray(F, lanes, 0);
    }

    /** The lanes of s[at, at + L) whose index is below {@code valid}, the others -inf. */
    private static FloatVector maskedRow(Tensor s, int at, int valid) {
        FloatVector v = load(s, at);
        return valid >= L ? v : v.blend(Float.NEGATIVE_INFINITY, IOTA.compare(VectorOperators.GE, valid));
    }

    private static void zeroRun(Tensor t, int at, int n) {
        int j = 0;
        FloatVector z = FloatVector.zero(F);
        for (; j + L <= n; j += L) {
            store(z, t, at + j);
        }
        for (; j < n; j++) {
            put(t, at + j, 0f);
        }
    }

    @Override
    public void causalSoftmaxBackward(Tensor p, int offP, Tensor dp, int offDp, int seqLen, int from, int to) {
        for (int i = from; i < to; i++) {
            int rp = offP + i * seqLen;
            int rd = offDp + i * seqLen;
            int n = i + 1;
            FloatVector acc = FloatVector.zero(F);
            int j = 0;
            for (; j + L <= n; j += L) {
                acc = load(p, rp + j).fma(load(dp, rd + j), acc);
            }
            float dot = acc.reduceLanes(VectorOperators.ADD);
            for (; j < n; j++) {
                dot += get(p, rp + j) * get(dp, rd + j);
            }
            FloatVector dotV = FloatVector.broadcast(F, dot);
            for (j = 0; j + L <= n; j += L) {
                store(load(p, rp + j).mul(load(dp, rd + j).sub(dotV)), dp, rd + j);
            }
            for (; j < n; j++) {
                put(dp, rd + j, get(p, rp + j) * (get(dp, rd + j) - dot));
            }
            zeroRun(dp, rd + n, seqLen - n);
        }
    }

    @Override
    public void maskedCopy(Tensor src, int offSrc, ByteBuffer mask, int maskOff, double keep, Tensor dst, int offDst, int n) {
        float k = (float) keep;
        int e = 0;
        for (; e + L <= n; e += L) {
            store(load(src, offSrc + e).mul(maskLanes(mask, maskOff + e).mul(k)), dst, offDst + e);
        }
        for (; e < n; e++) {
            put(dst, offDst + e, mask.get(maskOff + e) != 0 ? get(src, offSrc + e) * k : 0f);
        }
    }

    @Override
    public void crossEntropy(Tensor logits, int[] targets, int firstRow, int vocab, Tensor losses, double gradScale, int from, int to) {
        boolean grad = Double.isFinite(gradScale);
        float scale = (float) gradScale;
        for (int r = from; r < to; r++) {
            int o = r * vocab;
            FloatVector mx = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            int v = 0;
            for (; v + L <= vocab; v += L) {
                mx = mx.max(load(logits, o + v));
            }
            float max = mx.reduceLanes(VectorOperators.MAX);
            for (; v < vocab; v++) {
                max = Math.max(max, get(logits, o + v));
            }
            FloatVector maxV = FloatVector.broadcast(F, max);
            FloatVector acc = FloatVector.zero(F);
            for (v = 0; v + L <= vocab; v += L) {
                acc = acc.add(load(logits, o + v).sub(maxV).lanewise(VectorOperators.EXP));
            }
            float sum = acc.reduceLanes(VectorOperators.ADD);
            for (; v < vocab; v++) {
                sum += (float) Math.exp(get(logits, o + v) - max);
            }
            int target = targets[firstRow + r];
            put(losses, firstRow + r, (float) (Math.log(sum) + max - get(logits, o + target)));
            if (grad) {
                FloatVector k = FloatVector.broadcast(F, scale / sum);
                for (v = 0; v + L <= vocab; v += L) {
                    store(load(logits, o + v).sub(maxV).lanewise(VectorOperators.EXP).mul(k), logits, o + v);
                }
                for (; v < vocab; v++) {
                    put(logits, o + v, (float) Math.exp(get(logits, o + v) - max) * (scale / sum));
                }
                put(logits, o + target, get(logits, o + target) - scale);
            }
        }
    }
}
