package io.dtrain.data.loader;

import io.dtrain.data.DataException;
import io.dtrain.data.reader.BadRecordReport;
import java.util.Arrays;

/**
 * All documents' tokens in memory, each document followed by the end-of-document id, concatenated in reader order.
 * Stored as {@code char[]} (unsigned 16 bit) when the vocabulary fits, else {@code int[]}; a Java array caps it at
 * about 2^31 tokens, which is what the Arrow shards replace.
 */
public final class PackedTokenDataset implements TokenDataset {
    private final char[] small;
    private final int[] large;
    private final long numTokens;
    private final int seqLen;
    private final long numSamples;
    private final long numDocuments;
    private final BadRecordReport badRecords;

    private PackedTokenDataset(char[] small, int[] large, long numTokens, int seqLen, long numDocuments,
                               BadRecordReport badRecords) {
        if (seqLen < 1) {
            throw new IllegalArgumentException("seqLen must be >= 1, got " + seqLen);
        }
        this.small = small;
        this.large = large;
        this.numTokens = numTokens;
        this.seqLen = seqLen;
        this.numDocuments = numDocuments;
        this.badRecords = badRecords;
        this.numSamples = numTokens <= seqLen ? 0 : (numTokens - 1) / seqLen;
        if (numSamples == 0) {
            throw new DataException("the data holds " + numTokens + " tokens, fewer than one sample needs (seqLen + 1 = "
                    + (seqLen + 1) + "); use more data or a shorter sequence length");
        }
    }

    /** Wraps already packed tokens (tests, synthetic data). */
    public static PackedTokenDataset of(int[] tokens, int seqLen) {
        return new PackedTokenDataset(null, tokens.clone(), tokens.length, seqLen, 0, new BadRecordReport());
    }

    @Override
    public long numSamples() {
        return numSamples;
    }

    @Override
    public int seqLen() {
        return seqLen;
    }

    @Override
    public long numTokens() {
        return numTokens;
    }

    @Override
    public long numDocuments() {
        return numDocuments;
    }

    /** Records the reader skipped while building this dataset. */
    @Override
    public BadRecordReport badRecords() {
        return badRecords;
    }

    /** Token at position {@code i} of the packed stream. */
    @Override
    public int token(long i) {
        return small != null ? small[(int) i] : large[(int) i];
    }

    @Override
    public void window(long sampleIndex, int[] dst) {
        if (sampleIndex < 0 || sampleIndex >= numSamples) {
            throw new IndexOutOfBoundsException("sample " + sampleIndex + " of " + numSamples);
        }
        if (dst.length != seqLen + 1) {
            throw new IllegalArgumentException("window buffer has length " + dst.length + ", needs seqLen + 1 = " + (seqLen + 1));
        }
        int from = (int) (sampleIndex * seqLen);
        if (small != null) {
            for (int k = 0; k <= seqLen; k++) {
                dst[k] = small[from + k];
            }
        } else {
            System.arraycopy(large, from, dst, 0, seqLen + 1);
        }
    }

    /** Appends tokens, growing by 1.5x; picks the 16-bit store when every id fits. */
    public static final class Builder {
        private static final int MAX_TOKENS = Integer.MAX_VALUE - 16;
        private final boolean compact;
        private char[] small;
        private int[] large;
        private int size;
        private long documents;

        public Builder(int vocabSize) {
            this.compact = vocabSize <= 65536;
            if (compact) {
                small = new char[1 << 16];
            } else {
                large = new int[1 << 16];
            }
        }

        /** Appends one document's ids and then {@code eotId}. */
        public Builder addDocument(int[] ids, int eotId) {
            ensure((long) size + ids.length + 1);
            if (compact) {
                for (int id : ids) {
                    small[size++] = (char) id;
                }
                small[size++] = (char) eotId;
            } else {
                System.arraycopy(ids, 0, large, size, ids.length);
                size += ids.length;
                large[size++] = eotId;
            }
            documents++;
            return this;
        }

        private void ensure(long needed) {
            if (needed > MAX_TOKENS) {
                throw new DataException("more than " + MAX_TOKENS + " tokens do not fit the in-memory dataset;"
                        + " convert the corpus to token shards instead");
            }
            int capacity = compact ? small.length : large.length;
            if (needed > capacity) {
                int grown = (int) Math.min(MAX_TOKENS, Math.max(needed, capacity + (capacity >> 1)));
                if (compact) {
                    small = Arrays.copyOf(small, grown);
                } else {
                    large = Arrays.copyOf(large, grown);
                }
            }
        }

        public long size() {
            return size;
        }

        public PackedTokenDataset build(int seqLen, BadRecordReport badRecords) {
            char[] s = compact ? Arrays.copyOf(small, size) : null;
            int[] l = compact ? null : Arrays.copyOf(large, size);
            small = null;
            large = null;
            return new PackedTokenDataset(s, l, size, seqLen, documents, badRecords);
        }
    }
}
