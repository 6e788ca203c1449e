package io.dtrain.data.tokenizer;

import io.dtrain.data.DataException;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * The merge rules of a byte-level BPE and the loop that applies them to one piece. Apart from {@link Gpt2Tokenizer}
 * because this is where the ids are decided (tiktoken's order: lowest merge rank first, leftmost on ties) and where
 * the time goes per uncached piece; the tokenizer around it only splits text, caches pieces and maps ids to bytes.
 */
final class BpeMerges {
    private final int[] byteToId;             // byte -> id of its single-byte token
    private final PairRanks pairRanks;        // (left id, right id) -> merge rank
    private final int[] mergedId;             // merge rank -> id of the merged token

    /** {@code merges} in rank order, as spelled in the vocabulary {@code ids}; {@code source} names the files in errors. */
    BpeMerges(Map<String, Integer> ids, List<String[]> merges, int[] byteToId, String source) {
        this.byteToId = byteToId;
        pairRanks = new PairRanks(merges.size());
        mergedId = new int[merges.size()];
        for (int rank = 0; rank < merges.size(); rank++) {
            String[] m = merges.get(rank);
            Integer left = ids.get(m[0]);
            Integer right = ids.get(m[1]);
            Integer merged = ids.get(m[0] + m[1]);
            if (left == null || right == null || merged == null) {
                throw new DataException(source + ": merge " + (rank + 1) + " '" + m[0] + " " + m[1]
                        + "' uses or makes a token that is not in the vocabulary");
            }
            pairRanks.putIfAbsent(left, right, rank);
            mergedId[rank] = merged;
        }
    }

    /** Merges the piece's byte tokens, always the adjacent pair of lowest merge rank first (leftmost on ties). */
    int[] apply(byte[] bytes, int length) {
        int len = length;
        int[] ids = new int[len];
        for (int k = 0; k < len; k++) {
            ids[k] = byteToId[bytes[k] & 0xFF];
        }
        if (len < 2) {
            return ids;
        }
        int[] ranks = new int[len - 1];  // ranks[k] = rank of merging ids[k] and ids[k + 1]
        for (int k = 0; k < len - 1; k++) {
            ranks[k] = pairRanks.get(ids[k], ids[k + 1]);
        }
        while (len > 1) {
            int best = 0;
            for (int k = 1; k < len - 1; k++) {
                if (ranks[k] < ranks[best]) {
                    best = k;
                }
            }
            int rank = ranks[best];
            if (rank == Integer.MAX_VALUE) {
                break;
            }
            ids[best] = mergedId[rank];
            System.arraycopy(ids, best + 2, ids, best + 1, len - best - 2);
            System.arraycopy(ranks, best + 1, ranks, best, len - best - 2);
            len--;
            if (best > 0) {
                ranks[best - 1] = pairRanks.get(ids[best - 1], ids[best]);
            }
            if (best < len - 1) {
                ranks[best] = pairRanks.get(ids[best], ids[best + 1]);
            }
        }
        return len == ids.length ? ids : Arrays.copyOf(ids, len);
    }

    /** Open-addressing map from an id pair to a merge rank; {@code Integer.MAX_VALUE} when absent. */
    private static final class PairRanks {
        private final long[] keys;
        private final int[] values;
        private final int mask;

        PairRanks(int expected) {
            int cap = Integer.highestOneBit(Math.max(4, expected * 2)) << 1;
            keys = new long[cap];
            values = new int[cap];
            mask = cap - 1;
            Arrays.fill(keys, -1L);
        }

        private static long key(int left, int right) {
            return (long) left << 32 | (right & 0xFFFFFFFFL);
        }

        private int slot(long key) {
            long h = key * 0x9E3779B97F4A7C15L;
            return (int) (h ^ (h >>> 29)) & mask;
        }

        void putIfAbsent(int left, int right, int rank) {
            long k = key(left, right);
            int s = slot(k);
            while (keys[s] != -1L) {
                if (keys[s] == k) {
                    return;  // a repeated merge line keeps its first (lowest) rank
                }
                s = (s + 1) & mask;
            }
            keys[s] = k;
            values[s] = rank;
        }

        int get(int left, int right) {
            long k = key(left, right);
            int s = slot(k);
            while (true) {
                long at = keys[s];
                if (at == k) {
                    return values[s];
                }
                if (at == -1L) {
                    return Integer.MAX_VALUE;
                }
                s = (s + 1) & mask;
            }
        }
    }
}
