package io.dtrain.data.loader;

/**
 * A deterministic shuffle of {@code [0, numSamples)} per (seed, epoch) in O(1) memory: a keyed Feistel network on
 * the smallest even-bit power of two that holds {@code numSamples}, with cycle walking (re-apply until the value
 * lands in range). A Feistel network is a bijection whatever its round function, and cycle walking keeps that on
 * the sub-range, so every sample appears exactly once per epoch; the domain is < 4x numSamples, so on average fewer
 * than 4 walks. Scales to any {@code long} sample count without a stored permutation.
 */
public final class SampleOrder {
    private static final int ROUNDS = 6;

    private final long numSamples;
    private final long seed;
    private final int halfBits;
    private final long halfMask;

    public SampleOrder(long numSamples, long seed) {
        if (numSamples < 1) {
            throw new IllegalArgumentException("numSamples must be >= 1, got " + numSamples);
        }
        this.numSamples = numSamples;
        this.seed = seed;
        int bits = Math.max(2, 64 - Long.numberOfLeadingZeros(numSamples - 1));
        bits += bits & 1;
        this.halfBits = bits / 2;
        this.halfMask = (1L << halfBits) - 1;
    }

    public long numSamples() {
        return numSamples;
    }

    /** The sample at {@code position} (in {@code [0, numSamples)}) of epoch {@code epoch}'s order. */
    public long sampleAt(long epoch, long position) {
        if (position < 0 || position >= numSamples) {
            throw new IndexOutOfBoundsException("position " + position + " of " + numSamples);
        }
        if (numSamples == 1) {
            return 0;
        }
        long epochKey = mix64(seed ^ mix64(epoch + 0x632BE59BD9B4E019L));
        long x = position;
        do {
            x = feistel(x, epochKey);
        } while (x >= numSamples);
        return x;
    }

    private long feistel(long x, long epochKey) {
        long left = x >>> halfBits;
        long right = x & halfMask;
        for (int r = 0; r < ROUNDS; r++) {
            long f = mix64(right ^ (epochKey + r * 0x9E3779B97F4A7C15L)) & halfMask;
            long next = left ^ f;
            left = right;
            right = next;
        }
        return left << halfBits | right;
    }

    /** SplitMix64's finalizer: a fast, well-mixing bijection on 64 bits. */
    static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
