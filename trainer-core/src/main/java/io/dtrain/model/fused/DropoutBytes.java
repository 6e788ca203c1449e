package io.dtrain.model.fused;

import io.dtrain.model.DropoutKeys;
import io.dtrain.model.DropoutMasks;

import java.nio.ByteBuffer;

/**
 * The fused engine's dropout masks: one byte per element (1 = kept), the same keep/drop decisions as the SameDiff
 * path's float masks ({@link DropoutMasks}), generated in the forward pass and kept for the backward pass.
 */
final class DropoutBytes {
    private DropoutBytes() {
    }

    /**
     * Elements [from, to) of a site's mask for a whole micro-batch, in which sample b owns elements
     * [b * perSample, (b + 1) * perSample): byte 1 where {@link DropoutMasks#uniform} of the sample's stream is
     * >= p.
     */
    static void fill(ByteBuffer mask, DropoutKeys keys, double p, int layer, int site, long perSample, long from, long to) {
        long e = from;
        while (e < to) {
            int b = (int) (e / perSample);
            long sampleEnd = Math.min(to, (b + 1) * perSample);
            long key = DropoutMasks.streamKey(keys.seed(), keys.step(), keys.sampleIndices()[b], layer, site);
            long base = b * perSample;
            for (; e < sampleEnd; e++) {
                mask.put((int) e, DropoutMasks.uniform(key, e - base) >= p ? (byte) 1 : (byte) 0);
            }
        }
    }
}
