package io.dtrain.parallel;

import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;

/**
 * The add loops: {@code dst[i] = dst[i] + src[i]} (then {@code / n} for AVG at a segment's owner), unrolled by
 * four. Plain IEEE float/double arithmetic, so a fixed reduction order gives the same bits everywhere.
 */
final class Reduce {
    private Reduce() {
    }

    static void addFloats(MutableDirectBuffer dst, DirectBuffer src, int srcOffset, int count) {
        int i = 0;
        for (; i + 4 <= count; i += 4) {
            int d = i << 2;
            int s = srcOffset + d;
            float a0 = dst.getFloat(d) + src.getFloat(s);
            float a1 = dst.getFloat(d + 4) + src.getFloat(s + 4);
            float a2 = dst.getFloat(d + 8) + src.getFloat(s + 8);
            float a3 = dst.getFloat(d + 12) + src.getFloat(s + 12);
            dst.putFloat(d, a0);
            dst.putFloat(d + 4, a1);
            dst.putFloat(d + 8, a2);
            dst.putFloat(d + 12, a3);
        }
        for (; i < count; i++) {
            int d = i << 2;
            dst.putFloat(d, dst.getFloat(d) + src.getFloat(srcOffset + d));
        }
    }

    static void addFloatsDivide(MutableDirectBuffer dst, DirectBuffer src, int srcOffset, int count, int divisor) {
        float n = divisor;
        for (int i = 0; i < count; i++) {
            int d = i << 2;
            dst.putFloat(d, (dst.getFloat(d) + src.getFloat(srcOffset + d)) / n);
        }
    }

    static void addDoubles(MutableDirectBuffer dst, DirectBuffer src, int srcOffset, int count) {
        int i = 0;
        for (; i + 4 <= count; i += 4) {
            int d = i << 3;
            int s = srcOffset + d;
            double a0 = dst.getDouble(d) + src.getDouble(s);
            double a1 = dst.getDouble(d + 8) + src.getDouble(s + 8);
            double a2 = dst.getDouble(d + 16) + src.getDouble(s + 16);
            double a3 = dst.getDouble(d + 24) + src.getDouble(s + 24);
            dst.putDouble(d, a0);
            dst.putDouble(d + 8, a1);
            dst.putDouble(d + 16, a2);
            dst.putDouble(d + 24, a3);
        }
        for (; i < count; i++) {
            int d = i << 3;
            dst.putDouble(d, dst.getDouble(d) + src.getDouble(srcOffset + d));
        }
    }

    static void addDoublesDivide(MutableDirectBuffer dst, DirectBuffer src, int srcOffset, int count, int divisor) {
        double n = divisor;
        for (int i = 0; i < count; i++) {
            int d = i << 3;
            dst.putDouble(d, (dst.getDouble(d) + src.getDouble(srcOffset + d)) / n);
        }
    }
}
