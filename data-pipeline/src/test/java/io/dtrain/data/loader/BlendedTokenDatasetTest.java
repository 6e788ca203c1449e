package io.dtrain.data.loader;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

class BlendedTokenDatasetTest {
    /** {@code samples} windows of seqLen 4 whose first token encodes (source, sample): base + sample * 4. */
    private static PackedTokenDataset source(int base, int samples) {
        int[] tokens = new int[samples * 4 + 1];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = base + i;
        }
        return PackedTokenDataset.of(tokens, 4);
    }

    @Test
    void countsFollowTheWeightsExactlyAndWindowsComeFromTheLocatedSample() {
        PackedTokenDataset big = source(0, 1000);         // downsampled
        PackedTokenDataset small = source(100_000, 30);   // upsampled
        BlendedTokenDataset blend = new BlendedTokenDataset(List.of(
                new BlendedTokenDataset.Source(big, 0.7), new BlendedTokenDataset.Source(small, 0.3)));
        assertEquals(1030, blend.numSamples());
        assertEquals(721, blend.samplesOf(0));  // 721.0 exactly
        assertEquals(309, blend.samplesOf(1));
        Map<Long, Integer> smallUses = new HashMap<>();
        Set<Long> bigUsed = new HashSet<>();
        int[] w = new int[5];
        int[] expected = new int[5];
        for (long i = 0; i < blend.numSamples(); i++) {
            long[] at = blend.locate(i);
            blend.window(i, w);
            (at[0] == 0 ? big : small).window(at[1], expected);
            assertArrayEquals(expected, w, "sample " + i);
            if (at[0] == 1) {
                smallUses.merge(at[1], 1, Integer::sum);
            } else {
                bigUsed.add(at[1]);
            }
        }
        assertEquals(721, bigUsed.size(), "a downsampled source never repeats a sample");
        assertEquals(30, smallUses.size());
        assertTrue(smallUses.values().stream().allMatch(c -> c == 10 || c == 11), smallUses.toString());
    }

    @Test
    void largestRemaindersMakeTheCountsAddUp() {
        BlendedTokenDataset blend = new BlendedTokenDataset(List.of(
                new BlendedTokenDataset.Source(source(0, 10), 1), new BlendedTokenDataset.Source(source(1000, 10), 1),
                new BlendedTokenDataset.Source(source(2000, 10), 1)), 100);
        assertEquals(List.of(34L, 33L, 33L), List.of(blend.samplesOf(0), blend.samplesOf(1), blend.samplesOf(2)));
    }

    @Test
    void theLoaderMixesSourcesInProportionAcrossAnEpoch() {
        BlendedTokenDataset blend = new BlendedTokenDataset(List.of(
                new BlendedTokenDataset.Source(source(0, 300), 1), new BlendedTokenDataset.Source(source(100_000, 100), 3)));
        try (BatchLoader loader = new BatchLoader(blend, 40, 10, 0, 1, 5)) {
            long fromSecond = 0;
            for (long step = 0; step < loader.stepsPerEpoch(); step++) {
                for (int j = 0; j < loader.microBatchesPerStep(); j++) {
                    for (int[] window : loader.microBatch(step, j).windows()) {
                        fromSecond += window[0] >= 100_000 ? 1 : 0;
                    }
                }
            }
            assertEquals(300, fromSecond);  // 3/4 of the 400 samples of the one (exact) epoch
        }
    }

    @Test
    void badSourcesAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new BlendedTokenDataset(List.of()));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new BlendedTokenDataset(List.of(
                new BlendedTokenDataset.Source(source(0, 10), 0))));
        assertTrue(e.getMessage().contains("weights must be > 0"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new BlendedTokenDataset(List.of(
                new BlendedTokenDataset.Source(source(0, 10), 1),
                new BlendedTokenDataset.Source(PackedTokenDataset.of(new int[50], 8), 1))));
        assertTrue(e.getMessage().contains("same sequence length"), e.getMessage());
    }
}
