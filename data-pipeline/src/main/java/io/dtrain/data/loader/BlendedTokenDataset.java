package io.dtrain.data.loader;

import io.dtrain.data.reader.BadRecordReport;
import java.util.ArrayList;
import java.util.List;

/**
 * Several datasets mixed by weight, Megatron's {@code data_path: w1 p1 w2 p2} style: an epoch has
 * {@code numSamples} samples (default: the sources' total), source {@code j} contributing
 * {@code round(numSamples * w_j / sum(w))} of them (the largest remainders round up, so the counts add up exactly).
 * Blended index {@code i} falls in source {@code j}'s range; the {@code k}-th sample of that range is the source's
 * sample {@code k mod size_j} when the source is upsampled (every sample repeated as evenly as possible) or the
 * evenly spaced sample {@code floor(k * size_j / n_j)} when it is downsampled. {@link BatchLoader} shuffles the
 * blended indices, so every global batch mixes the sources in proportion. O(number of sources) memory.
 */
public final class BlendedTokenDataset extends AbstractTokenDataset {
    private final List<TokenDataset> sources;
    private final long[] rangeStart;  // blended index of each source's first sample, then numSamples

    /** One source and its weight (any positive number; weights are normalized). */
    public record Source(TokenDataset dataset, double weight) {}

    public BlendedTokenDataset(List<Source> sources) {
        this(sources, sources.stream().mapToLong(s -> s.dataset().numSamples()).sum());
    }

    public BlendedTokenDataset(List<Source> sources, long numSamples) {
        this(sources, numSamples, rangeStarts(sources, numSamples));
    }

    private BlendedTokenDataset(List<Source> sources, long numSamples, long[] rangeStart) {
        super(sources.get(0).dataset().seqLen(), numSamples,
                sources.stream().mapToLong(s -> s.dataset().numTokens()).sum(),
                sources.stream().mapToLong(s -> s.dataset().numDocuments()).sum(), badRecordsOf(sources));
        this.sources = new ArrayList<>();
        for (Source s : sources) {
            this.sources.add(s.dataset());
        }
        this.rangeStart = rangeStart;
    }

    /** Checks the sources; the blended index where each source's range starts, then {@code numSamples}. */
    private static long[] rangeStarts(List<Source> sources, long numSamples) {
        if (sources.isEmpty()) {
            throw new IllegalArgumentException("blending needs at least one source");
        }
        if (numSamples < 1) {
            throw new IllegalArgumentException("numSamples must be >= 1, got " + numSamples);
        }
        int len = sources.get(0).dataset().seqLen();
        double total = 0;
        for (int j = 0; j < sources.size(); j++) {
            Source s = sources.get(j);
            if (!(s.weight() > 0) || Double.isInfinite(s.weight())) {
                throw new IllegalArgumentException("source " + j + " has weight " + s.weight() + "; weights must be > 0");
            }
            if (s.dataset().seqLen() != len) {
                throw new IllegalArgumentException("source " + j + " has seqLen " + s.dataset().seqLen()
                        + ", source 0 has " + len + "; all sources must use the same sequence length");
            }
            total += s.weight();
        }
        long[] counts = new long[sources.size()];
        double[] remainders = new double[sources.size()];
        long assigned = 0;
        for (int j = 0; j < counts.length; j++) {
            double exact = numSamples * (sources.get(j).weight() / total);
            counts[j] = (long) Math.floor(exact);
            remainders[j] = exact - counts[j];
            assigned += counts[j];
        }
        for (long left = numSamples - assigned; left > 0; left--) {
            int best = 0;
            for (int j = 1; j < counts.length; j++) {
                if (remainders[j] > remainders[best]) {
                    best = j;
                }
            }
            counts[best]++;
            remainders[best] = -1;
        }
        long[] rangeStart = new long[counts.length + 1];
        for (int j = 0; j < counts.length; j++) {
            rangeStart[j + 1] = rangeStart[j] + counts[j];
        }
        return rangeStart;
    }

    /** The sources' skipped records together. */
    private static BadRecordReport badRecordsOf(List<Source> sources) {
        long count = 0;
        List<BadRecordReport.BadRecord> kept = new ArrayList<>();
        for (Source s : sources) {
            count += s.dataset().badRecords().count();
            kept.addAll(s.dataset().badRecords().records());
        }
        return BadRecordReport.restored(count, kept);
    }

    /** Samples of source {@code j} per epoch. */
    public long samplesOf(int j) {
        return rangeStart[j + 1] - rangeStart[j];
    }

    /** Token {@code i} of the sources' streams one after another (the blend itself is a set of windows). */
    @Override
    int tokenAt(long i) {
        for (TokenDataset s : sources) {
            if (i < s.numTokens()) {
                return s.token(i);
            }
            i -= s.numTokens();
        }
        throw new IndexOutOfBoundsException("token " + i + " beyond the sources' " + numTokens() + " tokens");
    }

    /** Source index and that source's sample index of blended sample {@code i}: {@code {source, sample}}. */
    public long[] locate(long i) {
        if (i < 0 || i >= numSamples()) {
            throw new IndexOutOfBoundsException("sample " + i + " of " + numSamples());
        }
        int j = 0;
        while (i >= rangeStart[j + 1]) {
            j++;
        }
        long k = i - rangeStart[j];
        long n = rangeStart[j + 1] - rangeStart[j];
        long size = sources.get(j).numSamples();
        long sample = n >= size ? k % size : floorScale(k, size, n);
        return new long[] {j, sample};
    }

    /** {@code floor(k * size / n)} without overflow (k < n). */
    private static long floorScale(long k, long size, long n) {
        if (Math.multiplyHigh(k, size) == 0 && k * size >= 0) {
            return k * size / n;
        }
        return java.math.BigInteger.valueOf(k).multiply(java.math.BigInteger.valueOf(size))
                .divide(java.math.BigInteger.valueOf(n)).longValueExact();
    }

    @Override
    void copyWindow(long sampleIndex, int[] dst) {
        long[] at = locate(sampleIndex);
        sources.get((int) at[0]).window(at[1], dst);
    }
}
