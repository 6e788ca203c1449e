package io.dtrain.data.loader;

/**
 * Fixed-length training samples over a token stream: sample {@code i} is the {@code seqLen + 1} tokens starting
 * at {@code i * seqLen} (inputs are the first {@code seqLen}, targets the last {@code seqLen}).
 */
public interface TokenDataset {
    long numSamples();

    int seqLen();

    /** Copies sample {@code sampleIndex} into {@code dst}, which must have length {@code seqLen() + 1}. */
    void window(long sampleIndex, int[] dst);
}
