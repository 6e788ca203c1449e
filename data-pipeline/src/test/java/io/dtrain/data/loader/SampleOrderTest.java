package io.dtrain.data.loader;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.BitSet;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class SampleOrderTest {

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 4, 5, 7, 16, 17, 100, 1000, 4096, 4097, 65_537, 300_007})
    void everyEpochIsAPermutation(long n) {
        SampleOrder order = new SampleOrder(n, 1234);
        for (long epoch = 0; epoch < 3; epoch++) {
            BitSet seen = new BitSet((int) n);
            for (long p = 0; p < n; p++) {
                long s = order.sampleAt(epoch, p);
                assertTrue(s >= 0 && s < n, "sample " + s + " out of range");
                assertTrue(!seen.get((int) s), "sample " + s + " twice in epoch " + epoch);
                seen.set((int) s);
            }
            assertEquals(n, seen.cardinality());
        }
    }

    @Test
    void deterministicAndDifferentPerEpochAndSeed() {
        int n = 10_000;
        SampleOrder a = new SampleOrder(n, 42);
        SampleOrder b = new SampleOrder(n, 42);
        SampleOrder otherSeed = new SampleOrder(n, 43);
        int sameAsEpoch0 = 0;
        int sameAsOtherSeed = 0;
        int identity = 0;
        for (int p = 0; p < n; p++) {
            assertEquals(a.sampleAt(0, p), b.sampleAt(0, p));
            assertEquals(a.sampleAt(7, p), b.sampleAt(7, p));
            sameAsEpoch0 += a.sampleAt(0, p) == a.sampleAt(1, p) ? 1 : 0;
            sameAsOtherSeed += a.sampleAt(0, p) == otherSeed.sampleAt(0, p) ? 1 : 0;
            identity += a.sampleAt(0, p) == p ? 1 : 0;
        }
        // A random permutation has on average one fixed point; allow plenty of slack but catch "no shuffle".
        assertTrue(sameAsEpoch0 < 20, "epochs 0 and 1 agree at " + sameAsEpoch0 + " positions");
        assertTrue(sameAsOtherSeed < 20, "seeds 42 and 43 agree at " + sameAsOtherSeed + " positions");
        assertTrue(identity < 20, identity + " fixed points");
    }

    @Test
    void billionsOfSamplesMapIntoRangeWithoutOverflow() {
        long n = 5_000_000_003L;
        SampleOrder order = new SampleOrder(n, 7);
        long s0 = order.sampleAt(3, 0);
        long sLast = order.sampleAt(3, n - 1);
        assertTrue(s0 >= 0 && s0 < n && sLast >= 0 && sLast < n && s0 != sLast);
    }
}
