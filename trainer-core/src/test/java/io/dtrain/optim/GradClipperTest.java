package io.dtrain.optim;

import io.dtrain.model.ParamKind;
import io.dtrain.model.ParamLayout;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GradClipperTest {

    static ParamLayout layout() {
        return ParamLayout.builder()
                .add("wte.weight", ParamKind.EMBEDDING, 0, 2, 2)
                .add("h.3.mlp.c_fc.weight", ParamKind.MATRIX, 0, 2, 4)
                .add("h.3.mlp.c_fc.bias", ParamKind.BIAS, 0, 4)
                .build();
    }

    @Test
    void normAndClipFactorAsClipGradNorm() {
        INDArray g = Nd4j.createFromArray(3.0f, 4.0f, 0f, 0f, 12f);   // norm 13
        assertEquals(13.0, GradClipper.globalNorm(g), 1e-12);
        assertEquals(3 * 3 + 4 * 4, GradClipper.sumOfSquares(g, 0, 2), 0.0);
        assertEquals(144.0, GradClipper.sumOfSquares(g, 2, 5), 0.0);
        assertEquals(1.0 / (13.0 + 1e-6), GradClipper.clipFactor(13.0, 1.0), 1e-15);
        assertEquals(1.0, GradClipper.clipFactor(13.0, 20.0), 0.0);
        assertEquals(1.0, GradClipper.clipFactor(13.0, 0.0), 0.0);    // clipping off
        assertTrue(Double.isNaN(GradClipper.clipFactor(Double.NaN, 1.0)));

        INDArray d = Nd4j.createFromArray(3.0, 4.0, 0, 0, 12.0);
        double before = GradClipper.clipInPlace(d, 6.5);
        assertEquals(13.0, before, 0.0);
        double f = 6.5 / (13.0 + 1e-6);
        assertArrayEquals(new double[] {3 * f, 4 * f, 0, 0, 12 * f}, d.toDoubleVector(), 1e-15);
        assertEquals(6.5, GradClipper.globalNorm(d), 1e-6);
    }

    @Test
    void float32IsAccumulatedInDouble() {
        int n = 3_000_001;
        INDArray g = Nd4j.valueArrayOf(new long[] {n}, 0.001f, DataType.FLOAT);
        double x = (double) 0.001f;
        double expected = Math.sqrt(n * x * x);
        // A float32 running sum of these 3M terms is off by percents; the double sum is good to ~1e-11.
        assertEquals(expected, GradClipper.globalNorm(g), expected * 1e-9);
    }

    @Test
    void namesTheFirstNonFiniteParameter() {
        ParamLayout layout = layout();
        for (DataType dt : new DataType[] {DataType.FLOAT, DataType.DOUBLE}) {
            INDArray g = Nd4j.ones(dt, layout.size());
            assertEquals(Optional.empty(), GradClipper.firstNonFinite(layout, g));
            g.putScalar(4 + 5, Double.NaN);
            g.putScalar(4 + 8 + 1, Double.POSITIVE_INFINITY);
            GradClipper.NonFinite nf = GradClipper.firstNonFinite(layout, g).orElseThrow();
            assertEquals("h.3.mlp.c_fc.weight", nf.name());
            assertEquals(5, nf.indexInTensor());
            assertEquals(9, nf.flatIndex());
            assertEquals("non-finite gradient in h.3.mlp.c_fc.weight (element 5 of [2, 4] is NaN)", nf.message());
            assertTrue(Double.isNaN(GradClipper.globalNorm(g)));
            // Restricted to a later range (e.g. another stage's), the Inf in the bias is the first one.
            GradClipper.NonFinite inBias = GradClipper.firstNonFinite(layout, g, 12, 16).orElseThrow();
            assertEquals("non-finite gradient in h.3.mlp.c_fc.bias (element 1 of [4] is Infinity)", inBias.message());
            assertEquals(Optional.empty(), GradClipper.firstNonFinite(layout, g, 0, 9));
        }
    }
}
