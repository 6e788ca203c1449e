package io.dtrain.model.fused;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Runs every float32 kernel a few thousand times on tiny tensors, once per process, before the first micro-batch.
 * Until the JIT's optimising compiler has compiled a kernel, the JDK runs its Vector API code through a fallback
 * that allocates an array per vector operation: on a full-size first step that is gigabytes of garbage, which both
 * slows the first steps and grows the heap (and the process's RSS) for the rest of the run. Tiny calls get the
 * kernels compiled for the cost of a fraction of a second.
 */
final class KernelWarmUp {
    private static final int CALLS = 3000;
    private static boolean done;

    private KernelWarmUp() {
    }

    static synchronized void floatKernels() {
        if (done) {
            return;
        }
        done = true;
        Kernels k = new FloatKernels();
        int d = 40;
        int rows = 2;
        int t = 24;
        Tensor a = Tensor.allocate(false, rows * d);
        Tensor b = Tensor.allocate(false, rows * d);
        Tensor c = Tensor.allocate(false, rows * d);
        Tensor w = Tensor.allocate(false, d);
        Tensor bias = Tensor.allocate(false, d);
        Tensor stats = Tensor.allocate(false, rows);
        Tensor stats2 = Tensor.allocate(false, rows);
        Tensor s = Tensor.allocate(false, t * t);
        Tensor ds = Tensor.allocate(false, t * t);
        Tensor wte = Tensor.allocate(false, 4 * d);
        ByteBuffer mask = ByteBuffer.allocateDirect(t * t).order(ByteOrder.nativeOrder());
        int[] tokens = {1, 3};
        int[] targets = {2, 0};
        for (int i = 0; i < rows * d; i++) {
            a.set(i, Math.sin(i));
            b.set(i, Math.cos(i));
        }
        for (int i = 0; i < d; i++) {
            w.set(i, 1.0);
        }
        for (int i = 0; i < t * t; i++) {
            mask.put(i, (byte) (i % 3 == 0 ? 0 : 1));
        }
        for (int n = 0; n < CALLS; n++) {
            k.layerNorm(a, w, bias, c, stats, stats2, d, 1e-5, 0, rows);
            k.layerNormBackwardInput(b, a, w, stats, stats2, c, d, 0, rows);
            k.layerNormBackwardParams(b, a, stats, stats2, w, bias, rows, d, 0, d);
            k.gelu(a, c, 0, rows * d);
            k.geluBackward(a, b, c, 0, rows * d);
            k.relu(a, c, 0, rows * d);
            k.reluBackward(a, b, c, 0, rows * d);
            k.residual(a, b, mask, 0, 1.1, c, 0, rows * d);
            k.residual(a, b, null, 0, 1.0, c, 0, rows * d);
            k.applyMask(c, 0, mask, 0, 1.1, 0, rows * d);
            k.maskedCopy(a, 0, mask, 0, 1.1, c, 0, rows * d);
            k.add(a, c, 0, rows * d);
            k.zero(c, 0, rows * d);
            k.fillRows(bias, c, 0, d, 0, rows);
            k.columnSums(a, bias, rows, d, 0, d);
            k.causalSoftmax(s, 0, t, 0, 0, t);
            k.causalSoftmaxBackward(s, 0, ds, 0, t, 0, t);
            k.crossEntropy(c, targets, 0, d, stats, 0.5, 0, rows);
            k.embed(tokens, wte, a, c, rows, d, 0, rows);
            k.scatterAddRows(tokens, rows, b, wte, d, 0, 4);
            k.sumOverBatch(b, w, 1, rows, 1, 0, rows);
        }
    }
}
