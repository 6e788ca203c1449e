package io.dtrain.parallel;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.agrona.BufferUtil;
import org.agrona.DirectBuffer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * A flat run of float32 or float64 elements in native memory that a collective reads and writes in place:
 * a 1-D contiguous ND4J array, a direct {@link ByteBuffer} or an off-heap Agrona buffer. It keeps a reference
 * to its owner so the memory stays alive while a collective runs.
 */
public final class FlatBuffer {
    private final Object owner;
    private final long address;
    private final long elements;
    private final ElementType type;

    private FlatBuffer(Object owner, long address, long elements, ElementType type) {
        this.owner = owner;
        this.address = address;
        this.elements = elements;
        this.type = type;
    }

    /** A 1-D (or any vector) contiguous FLOAT or DOUBLE array, views included. */
    public static FlatBuffer of(INDArray array) {
        ElementType type;
        if (array.dataType() == DataType.FLOAT) {
            type = ElementType.FLOAT32;
        } else if (array.dataType() == DataType.DOUBLE) {
            type = ElementType.FLOAT64;
        } else {
            throw new IllegalArgumentException("collectives need a FLOAT or DOUBLE array, got "
                    + array.dataType() + "; convert with array.castTo(DataType.FLOAT)");
        }
        boolean contiguous = array.length() <= 1 || (array.isVector() && array.elementWiseStride() == 1);
        if (!contiguous || array.isEmpty()) {
            throw new IllegalArgumentException("collectives need a 1-D contiguous array, got shape "
                    + java.util.Arrays.toString(array.shape()) + " stride "
                    + java.util.Arrays.toString(array.stride()) + "; pass array.reshape(-1) of a contiguous array"
                    + " or array.dup().reshape(-1)");
        }
        long address = array.data().address() + array.offset() * type.bytes();
        return new FlatBuffer(array, address, array.length(), type);
    }

    /** The elements between a direct buffer's position and limit, which must be in native byte order. */
    public static FlatBuffer of(ByteBuffer buffer, ElementType type) {
        if (!buffer.isDirect()) {
            throw new IllegalArgumentException("collectives need a direct ByteBuffer (ByteBuffer.allocateDirect)");
        }
        if (buffer.order() != ByteOrder.nativeOrder()) {
            throw new IllegalArgumentException("collectives need a ByteBuffer in native order: call buffer.order(ByteOrder.nativeOrder())");
        }
        if (buffer.remaining() % type.bytes() != 0) {
            throw new IllegalArgumentException("buffer has " + buffer.remaining() + " bytes remaining, not a multiple of "
                    + type.bytes() + " (" + type + ")");
        }
        return new FlatBuffer(buffer, BufferUtil.address(buffer) + buffer.position(),
                buffer.remaining() / type.bytes(), type);
    }

    /** {@code elements} elements at {@code byteOffset} of an off-heap Agrona buffer. */
    public static FlatBuffer of(DirectBuffer buffer, int byteOffset, int elements, ElementType type) {
        if (buffer.byteArray() != null) {
            throw new IllegalArgumentException("collectives need an off-heap Agrona buffer, not one wrapping a byte[]");
        }
        buffer.boundsCheck(byteOffset, elements * type.bytes());
        return new FlatBuffer(buffer, buffer.addressOffset() + byteOffset, elements, type);
    }

    static FlatBuffer ofAddress(Object owner, long address, long elements, ElementType type) {
        return new FlatBuffer(owner, address, elements, type);
    }

    /** Elements [from, to) of this buffer, sharing its memory. */
    public FlatBuffer slice(long from, long to) {
        if (from < 0 || to > elements || from >= to) {
            throw new IllegalArgumentException("slice [" + from + ", " + to + ") of a buffer of " + elements + " elements");
        }
        return new FlatBuffer(owner, address + from * type.bytes(), to - from, type);
    }

    /**
     * This buffer's memory as a native-order {@link ByteBuffer} of exactly its elements, sharing it (no copy): for
     * buffers over a direct {@code ByteBuffer}, such as {@link ProcessGroup#allocateBuffer}'s, so that a caller can
     * wrap them in another library's array (e.g. an ND4J {@code DataBuffer} over a JavaCPP {@code Pointer}).
     */
    public ByteBuffer asByteBuffer() {
        if (!(owner instanceof ByteBuffer whole)) {
            throw new IllegalStateException("this buffer is not over a direct ByteBuffer (its memory is "
                    + owner.getClass().getSimpleName() + "'s)");
        }
        long offset = address - BufferUtil.address(whole);
        return whole.slice(Math.toIntExact(offset), Math.toIntExact(byteLength())).order(ByteOrder.nativeOrder());
    }

    public long address() {
        return address;
    }

    public long elements() {
        return elements;
    }

    public ElementType type() {
        return type;
    }

    public long byteLength() {
        return elements * type.bytes();
    }

    Object owner() {
        return owner;
    }
}
