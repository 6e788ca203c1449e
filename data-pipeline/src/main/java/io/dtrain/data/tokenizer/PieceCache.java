package io.dtrain.data.tokenizer;

import java.util.Arrays;

/**
 * Piece -> ids for one thread, direct-mapped (a colliding piece replaces the old one): no per-lookup allocation and
 * no clearing pauses; common words stay because they are looked up again soon. Also holds the UTF-8 scratch buffer.
 * Its own class because it is the part of {@link Gpt2Tokenizer}'s speed that is about memory, not about BPE: a
 * reader of the merge rules need not read it, and changing its policy cannot change an id.
 */
final class PieceCache {
    private static final int SLOTS = 1 << 18;
    private final char[][] keys = new char[SLOTS][];
    private final int[][] values = new int[SLOTS][];
    private byte[] scratch = new byte[256];
    int utf8Length;

    private static int hash(char[] s, int from, int to) {
        int h = 0x811C9DC5;
        for (int k = from; k < to; k++) {
            h = (h ^ s[k]) * 0x01000193;
        }
        return (h ^ (h >>> 15)) & (SLOTS - 1);
    }

    int[] get(char[] s, int from, int to) {
        int slot = hash(s, from, to);
        char[] key = keys[slot];
        if (key == null || !Arrays.equals(key, 0, key.length, s, from, to)) {
            return null;
        }
        return values[slot];
    }

    void put(char[] s, int from, int to, int[] ids) {
        int slot = hash(s, from, to);
        keys[slot] = Arrays.copyOfRange(s, from, to);
        values[slot] = ids;
    }

    /** UTF-8 of {@code s[from, to)} in a reused buffer (length in {@link #utf8Length}); lone surrogates become '?' as in String.getBytes. */
    byte[] utf8(char[] s, int from, int to) {
        int need = (to - from) * 3;
        if (scratch.length < need) {
            scratch = new byte[Math.max(need, scratch.length * 2)];
        }
        byte[] b = scratch;
        int n = 0;
        for (int k = from; k < to; k++) {
            char c = s[k];
            if (c < 0x80) {
                b[n++] = (byte) c;
            } else if (c < 0x800) {
                b[n++] = (byte) (0xC0 | c >> 6);
                b[n++] = (byte) (0x80 | (c & 0x3F));
            } else if (Character.isHighSurrogate(c) && k + 1 < to && Character.isLowSurrogate(s[k + 1])) {
                int cp = Character.toCodePoint(c, s[++k]);
                b[n++] = (byte) (0xF0 | cp >> 18);
                b[n++] = (byte) (0x80 | ((cp >> 12) & 0x3F));
                b[n++] = (byte) (0x80 | ((cp >> 6) & 0x3F));
                b[n++] = (byte) (0x80 | (cp & 0x3F));
            } else if (Character.isSurrogate(c)) {
                b[n++] = '?';
            } else {
                b[n++] = (byte) (0xE0 | c >> 12);
                b[n++] = (byte) (0x80 | ((c >> 6) & 0x3F));
                b[n++] = (byte) (0x80 | (c & 0x3F));
            }
        }
        utf8Length = n;
        return b;
    }
}
