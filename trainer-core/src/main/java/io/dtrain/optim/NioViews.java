package io.dtrain.optim;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Pointer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;

/**
 * Direct NIO views of element ranges of the trainer's flat 1-D buffers, so the optimizer, the clipper and the
 * checkpoint code can run tight loops (one pass, no temporaries) over host memory instead of chains of ND4J ops.
 *
 * <p>Only for host (CPU backend) arrays that are contiguous vectors; anything else is rejected with a clear
 * error rather than silently read wrong. In ND4J 1.0.0-M2.1 a view's {@code data().asNio()} starts at the
 * start of the whole allocation, whereas {@code data().addressPointer()} already includes the view's offset:
 * that pointer is what is used here.
 */
public final class NioViews {
    /** NIO buffers are int-indexed: ranges longer than this are processed in chunks by the callers. */
    public static final int MAX_CHUNK = 1 << 30;

    private NioViews() {
    }

    /** Checks {@code flat} is a contiguous float32/float64 vector and {@code [from, to)} lies inside it. */
    public static void checkRange(String what, INDArray flat, long from, long to) {
        checkFlat(what, flat);
        if (from < 0 || to < from || to > flat.length()) {
            throw new IllegalArgumentException(what + ": range [" + from + ", " + to + ") is outside the buffer of "
                    + flat.length() + " elements");
        }
    }

    /** Checks {@code flat} is a contiguous float32/float64 vector. */
    public static void checkFlat(String what, INDArray flat) {
        if (flat == null) {
            throw new IllegalArgumentException(what + " is null");
        }
        DataType t = flat.dataType();
        if (t != DataType.FLOAT && t != DataType.DOUBLE) {
            throw new IllegalArgumentException(what + " has dtype " + t + "; only FLOAT (float32) and DOUBLE (float64) "
                    + "flat buffers are supported");
        }
        if (!flat.isVector() && !(flat.length() <= 1)) {
            throw new IllegalArgumentException(what + " must be a flat 1-D buffer, got shape "
                    + java.util.Arrays.toString(flat.shape()));
        }
        if (flat.length() > 1 && flat.elementWiseStride() != 1) {
            throw new IllegalArgumentException(what + " must be contiguous (element-wise stride 1), got stride "
                    + flat.elementWiseStride() + "; pass a dup() or an interval view of a flat buffer");
        }
    }

    /** Little-endian-on-x86 (native order) bytes of elements {@code [from, to)}; {@code to - from <= MAX_CHUNK}. */
    public static ByteBuffer bytes(INDArray flat, long from, long to) {
        checkRange("buffer", flat, from, to);
        long n = to - from;
        if (n > MAX_CHUNK) {
            throw new IllegalArgumentException("range of " + n + " elements is longer than one chunk (" + MAX_CHUNK + ")");
        }
        if (n == 0) {
            return ByteBuffer.allocateDirect(0).order(ByteOrder.nativeOrder());
        }
        Pointer base = flat.data().addressPointer();
        if (base == null || base.isNull()) {
            throw new IllegalStateException("buffer has no host memory (not a CPU backend array?)");
        }
        if (base.position() != 0) {
            throw new IllegalStateException("unexpected javacpp pointer position " + base.position()
                    + " for a flat buffer; NioViews assumes ND4J 1.0.0-M2.1 semantics");
        }
        long elem = flat.data().getElementSize();
        BytePointer bp = new BytePointer(base);
        long start = from * elem;
        long end = to * elem;
        bp.capacity(end).limit(end).position(start);
        return bp.asByteBuffer().order(ByteOrder.nativeOrder());
    }

    public static FloatBuffer floats(INDArray flat, long from, long to) {
        requireType(flat, DataType.FLOAT);
        return bytes(flat, from, to).asFloatBuffer();
    }

    public static DoubleBuffer doubles(INDArray flat, long from, long to) {
        requireType(flat, DataType.DOUBLE);
        return bytes(flat, from, to).asDoubleBuffer();
    }

    private static void requireType(INDArray flat, DataType t) {
        if (flat.dataType() != t) {
            throw new IllegalArgumentException("expected a " + t + " buffer, got " + flat.dataType());
        }
    }
}
