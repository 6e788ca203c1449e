package io.dtrain.model.fused;

import org.junit.jupiter.api.Test;
import org.nd4j.autodiff.samediff.SDVariable;
import org.nd4j.autodiff.samediff.SameDiff;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.List;
import java.util.Locale;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What ND4J 1.0.0-M2.1's CPU backend does with {@link DataType#HALF} (trainer-core/README.md, "Mixed precision"):
 * HALF arrays exist, convert and compute (GEMM, element-wise), with the results rounded to half; the printed times
 * compare a HALF GEMM with a FLOAT one (not asserted: tests assert numbers, not speed). A HALF GEMM also accumulates in
 * half precision, which is why neither engine multiplies HALF arrays; and casts inside a SameDiff graph carry
 * gradients, which is how the SameDiff engine rounds to fp16.
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

    @Test
    void halfGemmAccumulatesInHalfPrecision() {
        // 4096 ones: fp16 counts to 2048, where its spacing becomes 2 and 2048 + 1 rounds back to 2048
        INDArray ones = Nd4j.ones(DataType.FLOAT, 2, 4096).castTo(DataType.HALF);
        INDArray sum = ones.mmul(ones.transpose().dup());
        assertEquals(2048.0, sum.getDouble(0, 0), 0.0, "an fp32 accumulator would give 4096 (representable in fp16)");
        Nd4j.getRandom().setSeed(7);
        INDArray a = Nd4j.rand(DataType.FLOAT, 2, 4096).castTo(DataType.HALF);
        INDArray b = Nd4j.rand(DataType.FLOAT, 4096, 2).castTo(DataType.HALF);
        double exact = a.castTo(DataType.DOUBLE).mmul(b.castTo(DataType.DOUBLE)).getDouble(0, 0);
        double half = a.mmul(b).getDouble(0, 0);
        double float32 = a.castTo(DataType.FLOAT).mmul(b.castTo(DataType.FLOAT)).getDouble(0, 0);
        System.out.printf(Locale.ROOT, "dot of 4096 random halves in [0, 1): exact %.4f, HALF GEMM %.1f (%.1f%%),"
                + " FLOAT GEMM of the same halves %.4f%n", exact, half, 100 * (half - exact) / exact, float32);
        assertTrue(Math.abs(half - exact) / exact > 0.01, "fp16 accumulation loses percents at K = 4096");
        assertEquals(exact, float32, exact * 1e-6, "fp32 accumulation of the fp16 values is right");
    }

    @Test
    void castsInsideASameDiffGraphCarryGradients() {
        SameDiff sd = SameDiff.create();
        INDArray w0 = Nd4j.rand(DataType.FLOAT, 8, 4).subi(0.5);
        INDArray x0 = Nd4j.rand(DataType.FLOAT, 6, 8).subi(0.5);
        INDArray g0 = Nd4j.rand(DataType.FLOAT, 6, 4).subi(0.5);
        SDVariable w = sd.var("w", w0.dup());
        SDVariable x = sd.placeHolder("x", DataType.FLOAT, -1, 8);
        SDVariable g = sd.placeHolder("g", DataType.FLOAT, -1, 4);
        // AMP style: float32 weights cast to HALF for a HALF matmul
        SDVariable y = sd.mmul(x.castTo(DataType.HALF), w.castTo(DataType.HALF)).castTo(DataType.FLOAT);
        // apex O2 / the SameDiff engine's rounding: a round trip to HALF and back, float32 on both sides
        SDVariable v = sd.var("v", Nd4j.createFromArray(1.0f, 3.0f));
        SDVariable r = v.castTo(DataType.HALF).castTo(DataType.FLOAT).mul(1.0001);
        sd.sum("loss", y.mul(g)).add(r.sum());
        sd.setLossVariables("loss", r.sum().name());
        Map<String, INDArray> grads = sd.calculateGradients(Map.of("x", x0, "g", g0), List.of("w", "v"));
        INDArray dw = grads.get("w");
        assertEquals(DataType.FLOAT, dw.dataType(), "the cast's backward casts the gradient back");
        INDArray halfGemm = x0.castTo(DataType.HALF).transpose().mmul(g0.castTo(DataType.HALF)).castTo(DataType.FLOAT);
        assertEquals(0.0, dw.sub(halfGemm).amaxNumber().doubleValue(), 0.0, "dL/dw is the HALF GEMM of the halves");
        assertEquals(1.0f, grads.get("v").getFloat(0), 0.0f, "the round trip's backward rounds 1.0001 to half: 1");
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
