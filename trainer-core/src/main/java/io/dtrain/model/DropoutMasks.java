package io.dtrain.model;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Counter-based dropout masks: every element is a SplitMix64 hash of its key, never a draw from a stateful
 * generator, so masks are reproducible regardless of how samples are distributed over ranks, stages and
 * micro-batches.
 */
public final class DropoutMasks {
    /** Dropout on the embedding output (wte[x] + wpe). */
    public static final int SITE_EMBEDDING = 0;
    /** Dropout on the attention probabilities. */
    public static final int SITE_ATTENTION_PROBS = 1;
    /** Dropout on the attention residual branch (after c_proj). */
    public static final int SITE_ATTENTION_RESIDUAL = 2;
    /** Dropout on the MLP residual branch (after c_proj). */
    public static final int SITE_MLP_RESIDUAL = 3;

    /** The layer number used for the embedding site (blocks are 0..n_layer-1). */
    public static final int EMBEDDING_LAYER = -1;

    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final double TWO_POW_MINUS_53 = 0x1.0p-53;

    private DropoutMasks() {
    }

    /** SplitMix64's finaliser: a bijective 64-bit mix. */
    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** The key of one sample's mask stream at one (layer, site). */
    public static long streamKey(long seed, long step, long sampleIndex, int layer, int site) {
        long k = mix(seed + GOLDEN);
        k = mix(k + step * GOLDEN);
        k = mix(k + sampleIndex * GOLDEN);
        k = mix(k + (long) layer * GOLDEN);
        return mix(k + (long) site * GOLDEN);
    }

    /** Uniform double in [0, 1) for element {@code element} of a stream. */
    public static double uniform(long streamKey, long element) {
        return (mix(streamKey + (element + 1) * GOLDEN) >>> 11) * TWO_POW_MINUS_53;
    }

    /**
     * The inverted-dropout mask of a micro-batch, shape [B * perSampleRows, perSampleCols] flattened as
     * {@code shape}: row b's {@code perSample} elements come from sample b's stream. Values are 0 or 1/(1-p).
     */
    public static INDArray mask(DropoutKeys keys, double p, int layer, int site, long perSample, DataType dtype, long... shape) {
        int batch = keys.batchSize();
        long total = perSample * batch;
        if (total > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("dropout mask of " + total + " elements is too large");
        }
        if (!(p >= 0.0 && p < 1.0)) {
            throw new IllegalArgumentException("dropout probability must be in [0, 1), got " + p);
        }
        double keep = 1.0 / (1.0 - p);
        if (dtype == DataType.DOUBLE) {
            double[] m = new double[(int) total];
            for (int b = 0; b < batch; b++) {
                long key = streamKey(keys.seed(), keys.step(), keys.sampleIndices()[b], layer, site);
                int base = (int) (b * perSample);
                for (int e = 0; e < perSample; e++) {
                    m[base + e] = uniform(key, e) >= p ? keep : 0.0;
                }
            }
            return Nd4j.create(m, shape, DataType.DOUBLE);
        }
        float keepF = (float) keep;
        float[] m = new float[(int) total];
        for (int b = 0; b < batch; b++) {
            long key = streamKey(keys.seed(), keys.step(), keys.sampleIndices()[b], layer, site);
            int base = (int) (b * perSample);
            for (int e = 0; e < perSample; e++) {
                m[base + e] = uniform(key, e) >= p ? keepF : 0.0f;
            }
        }
        return Nd4j.create(m, shape, DataType.FLOAT);
    }
}
