package io.dtrain.model;

import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link Half}: exhaustive over the 65536 halves and every rounding boundary between them, and against ND4J's cast. */
class HalfTest {

    /** The reference: the nearest finite half by exact distance (double), ties to the even bit pattern; 65520+ is infinity. */
    private static short reference(float f) {
        if (Float.isNaN(f)) {
            return (short) 0x7e00;
        }
        int sign = Float.floatToRawIntBits(f) < 0 ? 0x8000 : 0;
        double a = Math.abs((double) f);
        if (a >= 65520.0) {
            return (short) (sign | 0x7c00);
        }
        int best = 0;
        double bestDist = Double.MAX_VALUE;
        int lo = 0;
        int hi = 0x7bff;
        while (hi - lo > 1) {                          // positive halves are ordered like their bit patterns
            int mid = (lo + hi) >>> 1;
            if (Half.toFloat((short) mid) <= a) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        for (int c = Math.max(0, lo - 1); c <= Math.min(0x7bff, lo + 2); c++) {
            double dist = Math.abs(Half.toFloat((short) c) - a);
            if (dist < bestDist || (dist == bestDist && (c & 1) == 0)) {
                best = c;
                bestDist = dist;
            }
        }
        return (short) (sign | best);
    }

    @Test
    void everyHalfRoundTripsExactly() {
        for (int h = 0; h < 0x10000; h++) {
            float f = Half.toFloat((short) h);
            boolean nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
            if (nan) {
                assertTrue(Float.isNaN(f), Integer.toHexString(h));
                assertTrue(Float.isNaN(Half.toFloat(Half.fromFloat(f))), Integer.toHexString(h));
            } else {
                assertEquals((short) h, Half.fromFloat(f), "half 0x" + Integer.toHexString(h));
            }
        }
    }

    @Test
    void everyMidpointAndItsNeighboursRoundAsTheReference() {
        for (int h = 0; h < 0x7c00; h++) {             // each finite half and the next one up (0x7c00: infinity)
            double lo = Half.toFloat((short) h);
            double hi = h == 0x7bff ? 65536.0 : Half.toFloat((short) (h + 1));
            float mid = (float) ((lo + hi) / 2);       // exact in float: halves have 11 significant bits
            for (float f : new float[]{mid, Math.nextDown(mid), Math.nextUp(mid), (float) lo, Math.nextUp((float) lo)}) {
                for (float s : new float[]{f, -f}) {
                    assertEquals(reference(s), Half.fromFloat(s), () -> "float " + s + " (0x"
                            + Integer.toHexString(Float.floatToRawIntBits(s)) + ")");
                }
            }
        }
    }

    @Test
    void edgeCases() {
        assertEquals((short) 0x7bff, Half.fromFloat(65504f));
        assertEquals((short) 0x7bff, Half.fromFloat(Math.nextDown(65520f)));
        assertEquals((short) 0x7c00, Half.fromFloat(65520f), "the midpoint above MAX rounds to infinity");
        assertEquals((short) 0xfc00, Half.fromFloat(Float.NEGATIVE_INFINITY));
        assertEquals((short) 0x7c00, Half.fromFloat(Float.MAX_VALUE));
        assertEquals((short) 0x0000, Half.fromFloat(0x1p-25f), "2^-25 is the tie between 0 and the smallest subnormal");
        assertEquals((short) 0x0001, Half.fromFloat(Math.nextUp(0x1p-25f)));
        assertEquals((short) 0x0001, Half.fromFloat(0x1p-24f));
        assertEquals((short) 0x8000, Half.fromFloat(-0f));
        assertEquals((short) 0x8000, Half.fromFloat(-Float.MIN_VALUE));
        assertEquals((short) 0x0400, Half.fromFloat(Math.nextDown(0x1p-14f)), "rounds up into the smallest normal");
        assertEquals((short) 0x3c00, Half.fromFloat(1.0004882f), "1 + 2^-11 ties to 1");
        assertEquals((short) 0x3c02, Half.fromFloat(1.0014648f), "1 + 3 * 2^-11 ties to even 1 + 2^-9");
        assertTrue(Float.isNaN(Half.round(Float.NaN)));
        assertEquals(0.0999755859375f, Half.round(0.1f));
        assertEquals(Half.MAX, Half.toFloat((short) 0x7bff));
    }

    @Test
    void agreesWithNd4jsCastOnRandomFloats() {
        SplittableRandom random = new SplittableRandom(7);
        int n = 1 << 20;
        float[] values = new float[n];
        for (int i = 0; i < n; i++) {
            // every exponent from far below the subnormals to far above MAX
            values[i] = (float) ((random.nextBoolean() ? 1 : -1) * Math.scalb(1 + random.nextDouble(), random.nextInt(-30, 18)));
        }
        INDArray halves = Nd4j.createFromArray(values).castTo(DataType.HALF).castTo(DataType.FLOAT);
        for (int i = 0; i < n; i++) {
            float expected = halves.getFloat(i);
            assertEquals(expected, Half.round(values[i]), "float " + values[i]);
            assertEquals(reference(values[i]), Half.fromFloat(values[i]), "float " + values[i]);
        }
    }
}
