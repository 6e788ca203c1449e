package io.dtrain.model.fused;

import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Locale;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What ND4J 1.0.0-M2.1's CPU backend does with {@link DataType#HALF} (trainer-core/README.md, "Mixed precision"):
 * HALF arrays exist, convert and compute (GEMM, element-wise), with the results rounded to half; the printed times
 * compare a HALF GEMM with a FLOAT one (not asserted: tests assert numbers, not speed).
 */
class Nd4jHalfProbeTest {

    @Test
    void halfArraysStoreConvertAndCompute() {
        INDArray f = Nd4j.createFromArray(1f, 1.0001f, 65504f, 70000f, 1e-8f, -2.5f);
        INDArray h = f.castTo(DataType.HALF);
        assertEquals(DataType.HALF, h.dataType());
        assertEquals(2, h.data().getElementSize());
        INDArray back = h.castTo(DataType.FLOAT);
        assertEquals(1f, back.getFloat(1), "1.0001 rounds to 1 in half");
        assertEquals(65504f, back.getFloat(2));
        assertTrue(Float.isInfinite(back.getFloat(3)), "70000 overflows half");
        assertEquals(0f, back.getFloat(4), "1e-8 underflows half");

        INDArray a = Nd4j.rand(DataType.FLOAT, 64, 64);
        INDArray b = Nd4j.rand(DataType.FLOAT, 64, 64);
        INDArray ch = a.castTo(DataType.HALF).mmul(b.castTo(DataType.HALF));
        assertEquals(DataType.HALF, ch.dataType(), "a HALF GEMM computes and returns HALF");
        INDArray cf = a.castTo(DataType.HALF).castTo(DataType.FLOAT).mmul(b.castTo(DataType.HALF).castTo(DataType.FLOAT));
        double rel = ch.castTo(DataType.FLOAT).sub(cf).norm2Number().doubleValue() / cf.norm2Number().doubleValue();
        System.out.printf(Locale.ROOT, "HALF GEMM 64x64x64: relative difference from fp32 accumulation %.2e%n", rel);
        assertTrue(rel < 1e-2, "HALF GEMM result is the product rounded to half: " + rel);
        INDArray e = ch.add(ch).mul(0.5);
        assertEquals(DataType.HALF, e.dataType(), "element-wise ops on HALF stay HALF");

        int n = 512;
        INDArray x = Nd4j.rand(DataType.FLOAT, n, n);
        INDArray y = Nd4j.rand(DataType.FLOAT, n, n);
        INDArray xh = x.castTo(DataType.HALF);
        INDArray yh = y.castTo(DataType.HALF);
        double fMs = time(() -> x.mmul(y));
        double hMs = time(() -> xh.mmul(yh));
        System.out.printf(Locale.ROOT, "GEMM %d^3 on this CPU: FLOAT %.2f ms, HALF %.2f ms (%.1fx)%n", n, fMs, hMs, hMs / fMs);
    }

    private static double time(Runnable r) {
        for (int i = 0; i < 3; i++) {
            r.run();
        }
        int reps = 10;
        long t0 = System.nanoTime();
        for (int i = 0; i < reps; i++) {
            r.run();
        }
        return (System.nanoTime() - t0) / 1e6 / reps;
    }
}
