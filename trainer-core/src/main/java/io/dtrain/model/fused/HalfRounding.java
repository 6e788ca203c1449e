package io.dtrain.model.fused;

import io.dtrain.model.Half;

/**
 * fp16 storage on the CPU: rounds float32 elements in place to the nearest half ({@link Half#round}), which is what
 * writing them to an fp16 buffer on a GPU and reading them back gives (including overflow to infinity above 65504,
 * the event dynamic loss scaling watches for). The fused engine calls it on each value it stores when
 * {@code training.precision: fp16}; the arithmetic between stores stays float32, as tensor cores accumulate.
 */
public final class HalfRounding {
    private HalfRounding() {
    }

    /** {@code src} (flat float32) rounded to half precision into {@code dst} (same length): fp16 copies of weights. */
    public static void roundInto(org.nd4j.linalg.api.ndarray.INDArray src, org.nd4j.linalg.api.ndarray.INDArray dst) {
        Tensor from = Tensor.view(src, 0, src.length());
        Tensor to = Tensor.view(dst, 0, dst.length());
        to.copyFrom(from, 0, 0, from.size);
        round(to, 0, to.size);
    }

    /** Elements {@code [from, to)} of a float32 tensor, rounded to half precision in place. */
    static void round(Tensor t, int from, int to) {
        java.nio.ByteBuffer b = t.bytes;
        for (int i = from; i < to; i++) {
            int at = i << 2;
            b.putFloat(at, Half.round(b.getFloat(at)));
        }
    }
}
