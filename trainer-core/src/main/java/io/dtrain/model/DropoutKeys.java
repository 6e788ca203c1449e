package io.dtrain.model;

/**
 * What a micro-batch's dropout masks are keyed by. A mask element is a pure function of
 * (seed, step, global sample index, layer, site, element index within the sample), so a sample gets the same
 * masks whichever rank, stage or micro-batch computes it (see {@link DropoutMasks}).
 *
 * @param seed          run seed for dropout
 * @param step          optimizer step
 * @param sampleIndices global sample index of each row of the micro-batch
 */
public record DropoutKeys(long seed, long step, long[] sampleIndices) {

    public int batchSize() {
        return sampleIndices.length;
    }
}
