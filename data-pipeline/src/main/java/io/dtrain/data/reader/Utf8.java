package io.dtrain.data.reader;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Strict UTF-8 validation. Jackson's byte parser rejects invalid start bytes but decodes overlong forms
 * ({@code C0 AF} -> '/') and encoded surrogates without complaint, so records are checked here first.
 */
public final class Utf8 {
    private Utf8() {}

    /**
     * Returns -1 if {@code bytes[from, to)} is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
     * nothing above U+10FFFF, no cut sequences), otherwise the offset of the first byte of the bad sequence.
     */
    public static int firstInvalid(byte[] bytes, int from, int to) {
        int i = from;
        while (i < to) {
            // ASCII fast path: most of the Pile is ASCII, and JSON escapes the rest in most shards.
            while (i + 8 <= to && (readLong(bytes, i) & 0x8080808080808080L) == 0) {
                i += 8;
            }
            if (i >= to) {
                break;
            }
            int b0 = bytes[i] & 0xFF;
            if (b0 < 0x80) {
                i++;
                continue;
            }
            int len;
            int min2;  // allowed range of the second byte (narrower than 80..BF for E0, ED, F0, F4)
            int max2 = 0xBF;
            if (b0 >= 0xC2 && b0 <= 0xDF) {
                len = 2;
                min2 = 0x80;
            } else if (b0 >= 0xE0 && b0 <= 0xEF) {
                len = 3;
                min2 = b0 == 0xE0 ? 0xA0 : 0x80;   // E0 80..9F would be overlong
                if (b0 == 0xED) {
                    max2 = 0x9F;                   // ED A0..BF would encode a surrogate
                }
            } else if (b0 >= 0xF0 && b0 <= 0xF4) {
                len = 4;
                min2 = b0 == 0xF0 ? 0x90 : 0x80;   // F0 80..8F would be overlong
                if (b0 == 0xF4) {
                    max2 = 0x8F;                   // above U+10FFFF
                }
            } else {
                return i;                          // 80..C1 (continuation or overlong lead), F5..FF
            }
            if (i + len > to) {
                return i;
            }
            int b1 = bytes[i + 1] & 0xFF;
            if (b1 < min2 || b1 > max2) {
                return i;
            }
            for (int k = 2; k < len; k++) {
                if ((bytes[i + k] & 0xC0) != 0x80) {
                    return i;
                }
            }
            i += len;
        }
        return -1;
    }

    private static final VarHandle LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    private static long readLong(byte[] b, int i) {
        return (long) LONGS.get(b, i);
    }

    /** Index of the first unpaired UTF-16 surrogate in {@code s} (from a {@code \\uD800}-style escape), or -1. */
    public static int firstLoneSurrogate(String s) {
        int n = s.length();
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if (Character.isSurrogate(c)) {
                if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                    i++;
                } else {
                    return i;
                }
            }
        }
        return -1;
    }
}
