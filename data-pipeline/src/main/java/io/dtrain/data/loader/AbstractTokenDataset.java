package io.dtrain.data.loader;

import io.dtrain.data.DataException;
import io.dtrain.data.reader.BadRecordReport;

/**
 * The accessors every dataset shares, written once: its counts, fixed at construction, and {@link #window} and
 * {@link #token} with their argument checks; a subclass only copies ({@link #copyWindow}, {@link #tokenAt}).
 * Over one token stream (packed in memory, Arrow shards) sample {@code i} is tokens {@code [i*T, i*T + T + 1)} and
 * {@link #samplesIn} counts them.
 */
abstract class AbstractTokenDataset implements TokenDataset {
    private final int seqLen;
    private final long numSamples;
    private final long numTokens;
    private final long numDocuments;
    private final BadRecordReport badRecords;

    AbstractTokenDataset(int seqLen, long numSamples, long numTokens, long numDocuments, BadRecordReport badRecords) {
        this.seqLen = seqLen;
        this.numSamples = numSamples;
        this.numTokens = numTokens;
        this.numDocuments = numDocuments;
        this.badRecords = badRecords;
    }

    static void checkSeqLen(int seqLen) {
        if (seqLen < 1) {
            throw new IllegalArgumentException("seqLen must be >= 1, got " + seqLen);
        }
    }

    /**
     * Samples of a stream of {@code numTokens}: windows of {@code seqLen + 1} tokens starting {@code seqLen} apart.
     * Fewer than one is a {@link DataException} naming {@code source} ("the data", a directory).
     */
    static long samplesIn(long numTokens, int seqLen, String source) {
        long samples = numTokens <= seqLen ? 0 : (numTokens - 1) / seqLen;
        if (samples == 0) {
            throw new DataException(source + " holds " + numTokens + " tokens, fewer than one sample needs (seqLen + 1 = "
                    + (seqLen + 1) + "); use more data or a shorter sequence length");
        }
        return samples;
    }

    @Override
    public final long numSamples() {
        return numSamples;
    }

    @Override
    public final int seqLen() {
        return seqLen;
    }

    @Override
    public final long numTokens() {
        return numTokens;
    }

    @Override
    public final long numDocuments() {
        return numDocuments;
    }

    @Override
    public final BadRecordReport badRecords() {
        return badRecords;
    }

    @Override
    public final int token(long i) {
        if (i < 0 || i >= numTokens) {
            throw new IndexOutOfBoundsException("token " + i + " of " + numTokens);
        }
        return tokenAt(i);
    }

    @Override
    public final void window(long sampleIndex, int[] dst) {
        if (sampleIndex < 0 || sampleIndex >= numSamples) {
            throw new IndexOutOfBoundsException("sample " + sampleIndex + " of " + numSamples);
        }
        if (dst.length != seqLen + 1) {
            throw new IllegalArgumentException("window buffer has length " + dst.length + ", needs seqLen + 1 = " + (seqLen + 1));
        }
        copyWindow(sampleIndex, dst);
    }

    /** Token {@code i}, already checked to be in range. */
    abstract int tokenAt(long i);

    /** Copies sample {@code sampleIndex} (in range) into {@code dst} (of length {@code seqLen + 1}). */
    abstract void copyWindow(long sampleIndex, int[] dst);
}
