package io.dtrain.model.fused;

import io.dtrain.optim.NioViews;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.nio.ByteBuffer;

/**
 * A contiguous run of float32 or float64 elements in host memory: a parameter or gradient inside the trainer's
 * flat buffers, or an activation inside a stage's preallocated arena. Kernels index it by element; BLAS takes
 * its address. Made once (when a buffer is first seen), never per op.
 */
public final class Tensor {
    /** Native-order bytes of exactly this tensor, position 0. */
    final ByteBuffer bytes;
    /** Address of element 0. */
    final long address;
    /** Number of elements. */
    final int size;
    final boolean isDouble;
    /** Keeps the owning array (and so the memory) reachable as long as the view is. */
    private final INDArray owner;

    private Tensor(INDArray owner, long from, long to) {
        if (to - from > Integer.MAX_VALUE / 8) {
            throw new IllegalArgumentException("a tensor of " + (to - from) + " elements is too large for the fused engine"
                    + " (at most " + Integer.MAX_VALUE / 8 + " elements per tensor)");
        }
        this.owner = owner;
        this.isDouble = owner.dataType() == DataType.DOUBLE;
        this.size = (int) (to - from);
        // NioViews hands out a buffer positioned at the range; absolute indexing needs it to start there
        this.bytes = NioViews.bytes(owner, from, to).slice().order(java.nio.ByteOrder.nativeOrder());
        this.address = owner.data().addressPointer().address() + from * (isDouble ? 8 : 4);
    }

    /** Elements {@code [from, to)} of a flat (1-D, contiguous) float32/float64 array. */
    public static Tensor view(INDArray flat, long from, long to) {
        return new Tensor(flat, from, to);
    }

    /** A new zeroed tensor of {@code size} elements. */
    public static Tensor allocate(boolean isDouble, long size) {
        INDArray a = Nd4j.zeros(isDouble ? DataType.DOUBLE : DataType.FLOAT, Math.max(1, size));
        return new Tensor(a, 0, Math.max(1, size));
    }

    /** Bytes of these tensors' elements (null entries count nothing): what allocating them took. */
    static long bytesOf(Tensor... tensors) {
        long sum = 0;
        for (Tensor t : tensors) {
            sum += t == null ? 0 : (long) t.size * (t.isDouble ? 8 : 4);
        }
        return sum;
    }

    /** The array this tensor lives in (a 1-D view of exactly its elements when it was allocated on its own). */
    INDArray owner() {
        return owner;
    }

    int elementBytes() {
        return isDouble ? 8 : 4;
    }

    double get(int i) {
        return isDouble ? bytes.getDouble(i << 3) : bytes.getFloat(i << 2);
    }

    void set(int i, double v) {
        if (isDouble) {
            bytes.putDouble(i << 3, v);
        } else {
            bytes.putFloat(i << 2, (float) v);
        }
    }

    /** Copies elements {@code [from, from + n)} of {@code src} to {@code [to, to + n)} of this tensor. */
    void copyFrom(Tensor src, int from, int to, int n) {
        int e = elementBytes();
        bytes.put(to * e, src.bytes, from * e, n * e);
    }

    @Override
    public String toString() {
        return (isDouble ? "float64" : "float32") + "[" + size + "]@" + Long.toHexString(address);
    }
}
