package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/** ND4J arrays as collective buffers, and a world of one process (no network at all). */
class SingleProcessTest {
    @Test
    void flatBufferAddressesAnArrayAndItsViews() {
        INDArray array = Nd4j.arange(0, 20).castTo(DataType.FLOAT);
        INDArray view = array.get(NDArrayIndex.interval(5, 12));
        FlatBuffer flat = FlatBuffer.of(view);
        assertEquals(7, flat.elements());
        UnsafeBuffer memory = new UnsafeBuffer(flat.address(), (int) flat.byteLength());
        for (int i = 0; i < 7; i++) {
            assertEquals(view.getFloat(i), memory.getFloat(i * 4));
        }
        memory.putFloat(0, -1f);
        assertEquals(-1f, array.getFloat(5));

        INDArray doubles = Nd4j.arange(0, 6).castTo(DataType.DOUBLE);
        FlatBuffer d = FlatBuffer.of(doubles);
        assertEquals(ElementType.FLOAT64, d.type());
        assertEquals(5.0, new UnsafeBuffer(d.address(), 48).getDouble(40));
    }

    @Test
    void rejectsArraysItCannotReduceInPlace() {
        IllegalArgumentException strided = assertThrows(IllegalArgumentException.class,
                () -> FlatBuffer.of(Nd4j.arange(0, 20).castTo(DataType.FLOAT).reshape(4, 5).getColumn(1)));
        assertTrue(strided.getMessage().contains("contiguous"), strided.getMessage());
        assertThrows(IllegalArgumentException.class, () -> FlatBuffer.of(Nd4j.zeros(DataType.INT32, 4)));
        assertThrows(IllegalArgumentException.class, () -> FlatBuffer.of(Nd4j.zeros(DataType.FLOAT, 3, 4)));
    }

    @Test
    void aWorldOfOneNeedsNoNetwork() {
        try (ProcessGroup world = ProcessGroup.init(WorldConfig.single())) {
            INDArray a = Nd4j.createFromArray(1f, 2f, 3f);
            world.allReduce(a, ReduceOp.AVG);
            assertArrayEquals(new float[] {1f, 2f, 3f}, a.toFloatVector());
            INDArray out = Nd4j.zeros(DataType.FLOAT, 3);
            world.allGather(a, out);
            assertArrayEquals(new float[] {1f, 2f, 3f}, out.toFloatVector());
            INDArray part = Nd4j.zeros(DataType.FLOAT, 3);
            world.reduceScatter(a, part, ReduceOp.SUM);
            assertArrayEquals(new float[] {1f, 2f, 3f}, part.toFloatVector());
            world.broadcast(a, 0);
            world.barrier();
            assertEquals(0, world.bytesSent());
            assertEquals(0, world.clockOffsetToRank0Nanos());
            IllegalArgumentException wrongSize = assertThrows(IllegalArgumentException.class,
                    () -> world.allGather(a, Nd4j.zeros(DataType.FLOAT, 4)));
            assertTrue(wrongSize.getMessage().contains("allGather"), wrongSize.getMessage());
        }
    }
}
