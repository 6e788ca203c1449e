package io.dtrain.model.fused;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vectorised float32 kernels equal the float64 reference kernels (to float32 rounding) on sizes that exercise
 * whole vectors, masked last vectors and scalar tails.
 */
class KernelsTest {
    private static final Kernels F32 = new FloatKernels();
    private static final Kernels F64 = new DoubleKernels();
    private static final int ROWS = 5;
    private static final int D = 37;
    private static final int T = 40;

    /** The same random values in a float32 and a float64 tensor. */
    private record Pair(Tensor f, Tensor d) {
        static Pair random(long seed, int n, double scale) {
            SplittableRandom rng = new SplittableRandom(seed);
            Pair p = new Pair(Tensor.allocate(false, n), Tensor.allocate(true, n));
            for (int i = 0; i < n; i++) {
                double v = (float) ((rng.nextDouble() * 2 - 1) * scale);
                p.f.set(i, v);
                p.d.set(i, v);
            }
            return p;
        }

        static Pair zeros(int n) {
            return new Pair(Tensor.allocate(false, n), Tensor.allocate(true, n));
        }

        void assertClose(String what, double tolerance) {
            double worst = 0;
            for (int i = 0; i < d.size; i++) {
                double e = d.get(i);
                worst = Math.max(worst, Math.abs(f.get(i) - e) / Math.max(1.0, Math.abs(e)));
            }
            assertTrue(worst <= tolerance, what + ": worst difference " + worst);
        }
    }

    private static ByteBuffer mask(long seed, int n) {
        ByteBuffer m = ByteBuffer.allocateDirect(n).order(ByteOrder.nativeOrder());
        SplittableRandom rng = new SplittableRandom(seed);
        for (int i = 0; i < n; i++) {
            m.put(i, (byte) (rng.nextDouble() < 0.7 ? 1 : 0));
        }
        return m;
    }

    @Test
    void layerNormForwardAndBackward() {
        Pair x = Pair.random(1, ROWS * D, 3);
        Pair w = Pair.random(2, D, 1);
        Pair b = Pair.random(3, D, 1);
        Pair out = Pair.zeros(ROWS * D);
        Pair mean = Pair.zeros(ROWS);
        Pair rstd = Pair.zeros(ROWS);
        F32.layerNorm(x.f, w.f, b.f, out.f, mean.f, rstd.f, D, 1e-5, 0, ROWS);
        F64.layerNorm(x.d, w.d, b.d, out.d, mean.d, rstd.d, D, 1e-5, 0, ROWS);
        out.assertClose("layer norm", 1e-5);
        Pair dOut = Pair.random(4, ROWS * D, 1);
        Pair dx = Pair.random(5, ROWS * D, 1);
        F32.layerNormBackwardInput(dOut.f, x.f, w.f, mean.f, rstd.f, dx.f, D, 0, ROWS);
        F64.layerNormBackwardInput(dOut.d, x.d, w.d, mean.d, rstd.d, dx.d, D, 0, ROWS);
        dx.assertClose("layer norm dx", 1e-5);
        Pair dw = Pair.random(6, D, 1);
        Pair db = Pair.random(7, D, 1);
        F32.layerNormBackwardParams(dOut.f, x.f, mean.f, rstd.f, dw.f, db.f, ROWS, D, 0, D);
        F64.layerNormBackwardParams(dOut.d, x.d, mean.d, rstd.d, dw.d, db.d, ROWS, D, 0, D);
        dw.assertClose("layer norm dw", 1e-5);
        db.assertClose("layer norm db", 1e-5);
    }

    @Test
    void activationsAndResiduals() {
        int n = 3 * 16 + 5;
        Pair x = Pair.random(8, n, 4);
        Pair y = Pair.random(9, n, 2);
        Pair out = Pair.zeros(n);
        F32.gelu(x.f, out.f, 0, n);
        F64.gelu(x.d, out.d, 0, n);
        out.assertClose("gelu", 1e-6);
        Pair dx = Pair.zeros(n);
        F32.geluBackward(x.f, y.f, dx.f, 0, n);
        F64.geluBackward(x.d, y.d, dx.d, 0, n);
        dx.assertClose("gelu backward", 1e-6);
        F32.relu(x.f, out.f, 0, n);
        F64.relu(x.d, out.d, 0, n);
        out.assertClose("relu", 0);
        F32.reluBackward(x.f, y.f, dx.f, 0, n);
        F64.reluBackward(x.d, y.d, dx.d, 0, n);
        dx.assertClose("relu backward", 0);
        ByteBuffer m = mask(10, n);
        F32.residual(x.f, y.f, m, 0, 1 / 0.7, out.f, 0, n);
        F64.residual(x.d, y.d, m, 0, 1 / 0.7, out.d, 0, n);
        out.assertClose("residual with dropout", 1e-6);
        F32.applyMask(y.f, 0, m, 0, 1 / 0.7, 3, n);
        F64.applyMask(y.d, 0, m, 0, 1 / 0.7, 3, n);
        y.assertClose("mask", 1e-6);
        F32.maskedCopy(x.f, 2, m, 1, 1.25, out.f, 0, n - 2);
        F64.maskedCopy(x.d, 2, m, 1, 1.25, out.d, 0, n - 2);
        out.assertClose("masked copy", 1e-6);
        F32.columnSums(x.f, dx.f, 3, 17, 2, 17);
        F64.columnSums(x.d, dx.d, 3, 17, 2, 17);
        dx.assertClose("column sums", 1e-6);
        F32.add(x.f, y.f, 1, n);
        F64.add(x.d, y.d, 1, n);
        y.assertClose("add", 1e-6);
    }

    @Test
    void causalSoftmaxForwardAndBackwardWithAndWithoutShift() {
        for (int[] shape : new int[][] {{T, T, 0}, {7, 48, 33}, {3, 17, 10}}) {
            int rows = shape[0];
            int ld = shape[1];
            int shift = shape[2];
            Pair s = Pair.random(11, rows * ld, 5);
            F32.causalSoftmax(s.f, 0, ld, shift, 0, rows);
            F64.causalSoftmax(s.d, 0, ld, shift, 0, rows);
            s.assertClose("softmax " + rows + "x" + ld + " shift " + shift, 1e-6);
            if (shift == 0) {
                Pair dp = Pair.random(12, rows * ld, 1);
                F32.causalSoftmaxBackward(s.f, 0, dp.f, 0, ld, 0, rows);
                F64.causalSoftmaxBackward(s.d, 0, dp.d, 0, ld, 0, rows);
                dp.assertClose("softmax backward", 1e-6);
            }
        }
    }

    @Test
    void crossEntropyAndEmbedding() {
        int vocab = 53;
        Pair logits = Pair.random(13, ROWS * vocab, 6);
        int[] targets = {3, 52, 0, 17, 16};
        Pair losses = Pair.zeros(ROWS);
        F32.crossEntropy(logits.f, targets, 0, vocab, losses.f, 0.25, 0, ROWS);
        F64.crossEntropy(logits.d, targets, 0, vocab, losses.d, 0.25, 0, ROWS);
        losses.assertClose("losses", 1e-6);
        logits.assertClose("logit gradients", 1e-6);
        int seq = 4;
        int[] tokens = {1, 5, 5, 2, 7, 1, 0, 5};
        Pair wte = Pair.random(14, 9 * D, 1);
        Pair wpe = Pair.random(15, seq * D, 1);
        Pair x = Pair.zeros(tokens.length * D);
        F32.embed(tokens, wte.f, wpe.f, x.f, seq, D, 0, tokens.length);
        F64.embed(tokens, wte.d, wpe.d, x.d, seq, D, 0, tokens.length);
        x.assertClose("embedding", 1e-6);
        F32.scatterAddRows(tokens, tokens.length, x.f, wte.f, D, 2, 9);
        F64.scatterAddRows(tokens, tokens.length, x.d, wte.d, D, 2, 9);
        wte.assertClose("embedding backward", 1e-6);
        F32.sumOverBatch(x.f, wpe.f, 2, seq, D, 0, seq);
        F64.sumOverBatch(x.d, wpe.d, 2, seq, D, 0, seq);
        wpe.assertClose("position embedding backward", 1e-6);
    }
}
