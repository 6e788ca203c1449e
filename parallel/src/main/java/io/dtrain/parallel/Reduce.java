package io.dtrain.parallel;

import org.agrona.UnsafeApi;

/**
 * The add loops: {@code dst[i] = dst[i] + src[i]} (then {@code / n} for AVG at a segment's owner), or
 * {@code out[i] = a[i] + b[i]}, between off-heap regions given by absolute address (the caller's buffer and Aeron's
 * term buffers). Plain IEEE float/double
 * arithmetic, so a fixed reduction order gives the same bits everywhere.
 *
 * <p>Why raw addresses: these are simple counted loops over {@code Unsafe} accesses, which C2 compiles to SIMD code
 * running at memory speed (~10 GB/s on one core here). The same loop through {@code UnsafeBuffer.getFloat/putFloat}
 * (bounds checks on every access) or unrolled by hand ran at 1.8 GB/s and was the bottleneck of AllReduce. Callers
 * check the bounds once per frame instead: {@code count} elements must lie inside both regions.
 */
final class Reduce {
    private static volatile boolean warm;

    private Reduce() {
    }

    /**
     * Runs every loop until C2 has compiled it (once per process, a few milliseconds): small collectives call them
     * too rarely to get there by themselves, and interpreted they cost ~50x (a 4 KiB AllReduce took 0.2 ms).
     */
    static void warmUp() {
        if (warm) {
            return;
        }
        java.nio.ByteBuffer scratch = java.nio.ByteBuffer.allocateDirect(3 * 8192);
        long a = org.agrona.BufferUtil.address(scratch);
        long b = a + 8192;
        long c = b + 8192;
        for (int i = 0; i < 2_000; i++) {
            addFloatsTo(c, a, b, 2048);
            addDoublesTo(c, a, b, 1024);
            addFloats(c, a, 2048);
            addDoubles(c, a, 1024);
            addFloatsDivide(c, a, 2048, 2);
            addDoublesDivide(c, a, 1024, 2);
            divideFloats(c, 2048, 1);
            divideDoubles(c, 1024, 1);
        }
        java.lang.ref.Reference.reachabilityFence(scratch);
        warm = true;
    }

    /** {@code out[i] = a[i] + b[i]}: reduces a received frame straight into the claim of the frame that forwards it. */
    static void addFloatsTo(long out, long a, long b, int count) {
        for (int i = 0; i < count; i++) {
            long at = (long) i << 2;
            UnsafeApi.putFloat(out + at, UnsafeApi.getFloat(a + at) + UnsafeApi.getFloat(b + at));
        }
    }

    static void addDoublesTo(long out, long a, long b, int count) {
        for (int i = 0; i < count; i++) {
            long at = (long) i << 3;
            UnsafeApi.putDouble(out + at, UnsafeApi.getDouble(a + at) + UnsafeApi.getDouble(b + at));
        }
    }

    static void copy(long dst, long src, long bytes) {
        UnsafeApi.copyMemory(src, dst, bytes);
    }

    static void addFloats(long dst, long src, int count) {
        for (int i = 0; i < count; i++) {
            long at = (long) i << 2;
            UnsafeApi.putFloat(dst + at, UnsafeApi.getFloat(dst + at) + UnsafeApi.getFloat(src + at));
        }
    }

    static void addFloatsDivide(long dst, long src, int count, int divisor) {
        float n = divisor;
        for (int i = 0; i < count; i++) {
            long at = (long) i << 2;
            UnsafeApi.putFloat(dst + at, (UnsafeApi.getFloat(dst + at) + UnsafeApi.getFloat(src + at)) / n);
        }
    }

    static void addDoubles(long dst, long src, int count) {
        for (int i = 0; i < count; i++) {
            long at = (long) i << 3;
            UnsafeApi.putDouble(dst + at, UnsafeApi.getDouble(dst + at) + UnsafeApi.getDouble(src + at));
        }
    }

    static void addDoublesDivide(long dst, long src, int count, int divisor) {
        double n = divisor;
        for (int i = 0; i < count; i++) {
            long at = (long) i << 3;
            UnsafeApi.putDouble(dst + at, (UnsafeApi.getDouble(dst + at) + UnsafeApi.getDouble(src + at)) / n);
        }
    }

    static void divideFloats(long dst, int count, int divisor) {
        float n = divisor;
        for (int i = 0; i < count; i++) {
            long at = (long) i << 2;
            UnsafeApi.putFloat(dst + at, UnsafeApi.getFloat(dst + at) / n);
        }
    }

    static void divideDoubles(long dst, int count, int divisor) {
        double n = divisor;
        for (int i = 0; i < count; i++) {
            long at = (long) i << 3;
            UnsafeApi.putDouble(dst + at, UnsafeApi.getDouble(dst + at) / n);
        }
    }
}
