package io.dtrain.data.loader;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.data.DataException;
import io.dtrain.data.reader.BadRecordReport;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class BatchLoaderTest {
    private static final int T = 8;

    /** Token k of the packed stream is k (mod a prime), so every window's content is predictable. */
    private static PackedTokenDataset countingDataset(int numTokens) {
        int[] tokens = new int[numTokens];
        for (int k = 0; k < numTokens; k++) {
            tokens[k] = k % 65_521;
        }
        return PackedTokenDataset.of(tokens, T);
    }

    @Test
    void windowsAreTheRightSlices() {
        PackedTokenDataset ds = countingDataset(T * 50 + 1);
        assertEquals(50, ds.numSamples());
        try (BatchLoader loader = new BatchLoader(ds, 12, 3, 0, 2, 99)) {
            for (long step = 0; step < 10; step++) {
                for (int j = 0; j < loader.microBatchesPerStep(); j++) {
                    MicroBatch mb = loader.microBatch(step, j);
                    assertEquals(3, mb.size());
                    for (int i = 0; i < mb.size(); i++) {
                        long s = mb.sampleIndices()[i];
                        int[] expected = new int[T + 1];
                        for (int k = 0; k <= T; k++) {
                            expected[k] = (int) (s * T + k);
                        }
                        assertArrayEquals(expected, mb.windows()[i], "step " + step + " sample " + s);
                    }
                }
            }
        }
    }

    @Test
    void lastSampleNeedsOneExtraToken() {
        assertEquals(4, countingDataset(4 * T + 1).numSamples());
        assertEquals(3, countingDataset(4 * T).numSamples());
        DataException e = assertThrows(DataException.class, () -> countingDataset(T));
        assertTrue(e.getMessage().contains("seqLen + 1 = 9"), e.getMessage());
    }

    private static List<Long> globalBatch(PackedTokenDataset ds, int g, int b, int world, long step) {
        List<Long> all = new ArrayList<>();
        for (int r = 0; r < world; r++) {
            try (BatchLoader loader = new BatchLoader(ds, g, b, r, world, 5)) {
                for (int j = 0; j < loader.microBatchesPerStep(); j++) {
                    for (long s : loader.microBatch(step, j).sampleIndices()) {
                        all.add(s);
                    }
                }
            }
        }
        return all;
    }

    @Test
    void ranksTogetherSeeExactlyTheSingleRankGlobalBatch() {
        PackedTokenDataset ds = countingDataset(T * 1000 + 1);
        int g = 60;  // divisible by b * w for w = 1..5 with b = 2 or 3 (w=4 needs b*4 | 60 -> b=3 ok)
        for (long step : new long[] {0, 1, 15, 16, 17, 40}) {
            List<Long> reference = globalBatch(ds, g, 2, 1, step);
            assertEquals(g, reference.size());
            for (int w = 1; w <= 5; w++) {
                int b = (g / w) % 2 == 0 ? 2 : 3;
                assertEquals(reference, globalBatch(ds, g, b, w, step), "world " + w + " micro " + b + " step " + step);
            }
        }
    }

    @Test
    void anEpochCoversEachSampleOnceAndDropsTheRemainder() {
        PackedTokenDataset ds = countingDataset(T * 103 + 1);
        try (BatchLoader loader = new BatchLoader(ds, 10, 5, 0, 1, 3)) {
            assertEquals(10, loader.stepsPerEpoch());
            assertEquals(3, loader.droppedPerEpoch());
            for (long epoch = 0; epoch < 2; epoch++) {
                BitSet seen = new BitSet();
                for (long step = epoch * 10; step < (epoch + 1) * 10; step++) {
                    for (int j = 0; j < 2; j++) {
                        for (long s : loader.microBatch(step, j).sampleIndices()) {
                            assertTrue(!seen.get((int) s), "sample " + s + " twice in epoch " + epoch);
                            seen.set((int) s);
                        }
                    }
                }
                assertEquals(100, seen.cardinality());
            }
            long[] e0 = loader.microBatch(0, 0).sampleIndices();
            long[] e1 = loader.microBatch(10, 0).sampleIndices();
            assertTrue(!Arrays.equals(e0, e1), "epoch 1 repeats epoch 0's order");
        }
    }

    /** A dataset whose every window takes {@code millis} to copy; counts the windows copied so far. */
    private static TokenDataset slow(TokenDataset ds, int millis, AtomicInteger copied) {
        return new TokenDataset() {
            public long numSamples() { return ds.numSamples(); }
            public int seqLen() { return ds.seqLen(); }
            public long numTokens() { return ds.numTokens(); }
            public long numDocuments() { return ds.numDocuments(); }
            public BadRecordReport badRecords() { return ds.badRecords(); }
            public int token(long i) { return ds.token(i); }
            public void window(long sampleIndex, int[] dst) {
                try {
                    Thread.sleep(millis);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                ds.window(sampleIndex, dst);
                copied.incrementAndGet();
            }
        };
    }

    @Test
    void dataWaitCountsOnlyTheTimeABatchWasNotReady() throws InterruptedException {
        AtomicInteger copied = new AtomicInteger();
        long buildNanos = 4 * 50 * 1_000_000L;  // a step is 4 windows of 50 ms
        try (BatchLoader loader = new BatchLoader(slow(countingDataset(T * 40 + 1), 50, copied), 4, 2, 0, 1, 3)) {
            loader.microBatch(0, 0);  // nothing prefetched: waits for (nearly) the whole of step 0
            long afterFirst = loader.dataWaitNanos();
            assertTrue(afterFirst >= buildNanos * 3 / 4, "waited " + afterFirst + " ns for a step that takes " + buildNanos);
            loader.microBatch(0, 1);  // built with the first
            assertTrue(loader.dataWaitNanos() - afterFirst < buildNanos, "micro-batch 1 came with micro-batch 0");
            while (copied.get() < 8) {  // step 1 is built in the background meanwhile
                Thread.sleep(10);
            }
            Thread.sleep(50);
            long beforeSecond = loader.dataWaitNanos();
            loader.microBatch(1, 0);
            long waited = loader.dataWaitNanos() - beforeSecond;
            assertTrue(waited < buildNanos, "a prefetched step was waited for " + waited + " ns");
        }
    }

    @Test
    void sameSeedSameBatchesAnyAccessOrder() {
        PackedTokenDataset ds = countingDataset(T * 200 + 1);
        try (BatchLoader a = new BatchLoader(ds, 8, 4, 0, 1, 11);
             BatchLoader b = new BatchLoader(ds, 8, 4, 0, 1, 11)) {
            MicroBatch resumed = b.microBatch(17, 1);  // a resumed run jumps straight to step 17
            for (long step = 0; step <= 17; step++) {
                a.microBatch(step, 0);
            }
            assertArrayEquals(a.microBatch(17, 1).sampleIndices(), resumed.sampleIndices());
        }
    }

    @Test
    void unsplittableConfigNamesTheNumbers() {
        PackedTokenDataset ds = countingDataset(T * 100 + 1);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new BatchLoader(ds, 10, 3, 0, 2, 1));
        assertTrue(e.getMessage().contains("10 is not a multiple of 3 x 2 = 6"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new BatchLoader(ds, 8, 2, 2, 2, 1));
        assertTrue(e.getMessage().contains("rank 2"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new BatchLoader(ds, 200, 2, 0, 1, 1));
        assertTrue(e.getMessage().contains("100 samples"), e.getMessage());
    }
}
