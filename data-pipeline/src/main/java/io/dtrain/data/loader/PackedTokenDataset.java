package io.dtrain.data.loader;

import io.dtrain.data.DataException;
import io.dtrain.data.reader.BadRecordReport;
import java.util.Arrays;

/**
 * All documents' tokens in memory, each document followed by the end-of-document id, concatenated in reader order.
 * Stored as {@code char[]} (unsigned 16 bit) when the vocabulary fits, else {@code int[]}; a Java array caps it at
 * about 2^31 tokens, which is what the Arrow shards replace.
 */
public final class PackedTokenDataset extends AbstractTokenDataset {
    private final char[] small;
    private final int[] large;

    private PackedTokenDataset(char[] small, int[] large, long numTokens, int seqLen, long numDocuments,
                               BadRecordReport badRecords) {
        super(seqLen, samples(numTokens, seqLen), numTokens, numDocuments, badRecords);
        this.small = small;
        this.large = large;
    }

    private static long samples(long numTokens, int seqLen) {
        checkSeqLen(seqLen);
        return samplesIn(numTokens, seqLen, "the data");
    }

    /** Wraps already packed tokens (tests, synthetic data). */
    public static PackedTokenDataset of(int[] tokens, int seqLen) {
        return new PackedTokenDataset(null, tokens.clone(), tokens.length, seqLen, 0, new BadRecordReport());
    }

    @Override
    public long heapBytes() {
        return small != null ? 2L * small.length : 4L * large.length;
    }

    @Override
    int tokenAt(long i) {
        return small != null ? small[(int) i] : large[(int) i];
    }

    @Override
    void copyWindow(long sampleIndex, int[] dst) {
        int seqLen = seqLen();
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
