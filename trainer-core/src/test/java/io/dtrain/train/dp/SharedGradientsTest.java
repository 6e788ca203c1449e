package io.dtrain.train.dp;

import io.dtrain.common.UserFacingException;
import io.dtrain.parallel.ElementType;
import io.dtrain.parallel.FlatBuffer;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SharedGradientsTest {

    /** The ND4J array over a buffer's memory shares it both ways (no copy), views and in-place ops included. */
    @Test
    void wrappedArraySharesTheBuffersMemory() {
        for (DataType dtype : new DataType[] {DataType.FLOAT, DataType.DOUBLE}) {
            ElementType type = dtype == DataType.DOUBLE ? ElementType.FLOAT64 : ElementType.FLOAT32;
            int n = 10;
            ByteBuffer whole = ByteBuffer.allocateDirect(64 + n * type.bytes()).order(ByteOrder.nativeOrder());
            FlatBuffer flat = FlatBuffer.of(whole, type).slice(64 / type.bytes(), 64 / type.bytes() + n);
            ByteBuffer memory = flat.asByteBuffer();
            INDArray array = SharedGradients.wrap(memory, dtype, n);
            assertEquals(flat.address(), FlatBuffer.of(array).address(), dtype + ": same memory");

            array.assign(3);
            assertEquals(3.0, read(memory, type, 4), dtype + ": a write through the array is in the buffer");
            write(memory, type, 2, 7.0);
            assertEquals(7.0, array.getDouble(2), dtype + ": a write into the buffer is in the array");
            INDArray view = array.get(NDArrayIndex.interval(2, 5));
            view.divi(2);
            assertEquals(3.5, read(memory, type, 2), dtype + ": through a view");
            assertEquals(flat.address() + 2L * type.bytes(), FlatBuffer.of(view).address(), dtype + ": view's address");
            array.reshape(2, 5).addi(1);
            assertEquals(4.0, read(memory, type, 9), dtype + ": through a reshaped view");
        }
    }

    @Test
    void switchIsTrueOrFalseElseTheDefault() {
        assertEquals(SharedGradients.ON_BY_DEFAULT, SharedGradients.enabled(Map.of()));
        assertTrue(SharedGradients.enabled(Map.of("DTRAIN_SHM_GRADIENTS", "true")));
        assertFalse(SharedGradients.enabled(Map.of("DTRAIN_SHM_GRADIENTS", " FALSE ")));
        UserFacingException e = assertThrows(UserFacingException.class,
                () -> SharedGradients.enabled(Map.of("DTRAIN_SHM_GRADIENTS", "0")));
        assertEquals("DTRAIN_SHM_GRADIENTS=0 is not true or false; unset it or set DTRAIN_SHM_GRADIENTS=false to keep"
                + " the gradients in an ordinary ND4J array", e.getMessage());
    }

    private static double read(ByteBuffer memory, ElementType type, int i) {
        return type == ElementType.FLOAT64 ? memory.getDouble(i * 8) : memory.getFloat(i * 4);
    }

    private static void write(ByteBuffer memory, ElementType type, int i, double value) {
        if (type == ElementType.FLOAT64) {
            memory.putDouble(i * 8, value);
        } else {
            memory.putFloat(i * 4, (float) value);
        }
    }
}
