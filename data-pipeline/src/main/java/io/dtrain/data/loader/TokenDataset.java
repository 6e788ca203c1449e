package io.dtrain.data.loader;

import io.dtrain.data.reader.BadRecordReport;

/**
 * Fixed-length training samples over a token stream: sample {@code i} is the {@code seqLen + 1} tokens starting
 * at {@code i * seqLen} (inputs are the first {@code seqLen}, targets the last {@code seqLen}).
 */
public interface TokenDataset {
    long numSamples();

    int seqLen();

    /** Tokens in the stream, end-of-document ids included. */
    long numTokens();

    /** Documents the stream was built from. */
    long numDocuments();

    /** Records skipped while reading the input (for preprocessed data: the count recorded in the manifest). */
    BadRecordReport badRecords();

    /** Token at position {@code i} of the stream. */
    int token(long i);

    /** Copies sample {@code sampleIndex} into {@code dst}, which must have length {@code seqLen() + 1}. */
    void window(long sampleIndex, int[] dst);

    /** Bytes of the Java heap this dataset holds (its tokens when packed in memory; memory-mapped shards: none). */
    default long heapBytes() {
        return 0;
    }
}
