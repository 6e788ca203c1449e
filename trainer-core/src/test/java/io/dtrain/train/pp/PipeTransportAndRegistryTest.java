package io.dtrain.train.pp;

import io.dtrain.data.loader.MicroBatch;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PipeTransportAndRegistryTest {

    @Test
    void inMemoryTransportIsFifoPerPairAndCopies() {
        InMemoryPipeTransport t = new InMemoryPipeTransport();
        INDArray a = Nd4j.createFromArray(1.0, 2.0);
        t.send(0, 1, new PipeMessage(PipeMessage.Payload.ACTIVATION, 0, a));
        t.send(0, 1, new PipeMessage(PipeMessage.Payload.ACTIVATION, 1, Nd4j.createFromArray(3.0)));
        t.send(1, 0, new PipeMessage(PipeMessage.Payload.GRADIENT, 0, Nd4j.createFromArray(4.0)));
        a.muli(10);
        assertEquals(3, t.undelivered());
        assertNull(t.receive(2, 1));
        PipeMessage first = t.receive(0, 1);
        assertEquals(0, first.microbatch());
        assertArrayEquals(new double[] {1.0, 2.0}, first.tensor().toDoubleVector(), 0.0, "receiver's copy is unchanged");
        assertEquals(1, t.receive(0, 1).microbatch());
        assertNull(t.receive(0, 1));
        assertEquals(PipeMessage.Payload.GRADIENT, t.receive(1, 0).payload());
        assertEquals(0, t.undelivered());
    }

    @Test
    void registryCountsLiveBuffersAndThePeak() {
        ActivationRegistry r = new ActivationRegistry(2);
        r.hold(0, 0);
        r.hold(0, 1);
        r.hold(1, 0);
        r.release(0, 0);
        r.hold(0, 2);
        assertEquals(2, r.live(0));
        assertEquals(2, r.peak(0));
        assertEquals(1, r.peak(1));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> r.hold(0, 1));
        assertTrue(e.getMessage().contains("stage 0 already holds the activations of micro-batch 1"), e.getMessage());
        e = assertThrows(IllegalStateException.class, () -> r.release(1, 5));
        assertTrue(e.getMessage().contains("stage 1 holds no activations of micro-batch 5"), e.getMessage());
        assertArrayEquals(new int[] {2, 1}, r.peaks());
    }

    @Test
    void microbatchesAreConsecutiveEqualRowRanges() {
        int[][] w = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10, 11, 12}};
        List<MicroBatch> mbs = MicroBatch.split(w, new long[] {5, 6, 7, 8}, 2);
        assertEquals(2, mbs.size());
        assertArrayEquals(new long[] {7, 8}, mbs.get(1).sampleIndices());
        assertArrayEquals(new int[][] {{7, 8}, {10, 11}}, mbs.get(1).inputs());
        assertArrayEquals(new int[][] {{8, 9}, {11, 12}}, mbs.get(1).targets());
        assertThrows(IllegalArgumentException.class, () -> MicroBatch.split(w, new long[] {1, 2, 3}, 2));
        assertThrows(IllegalArgumentException.class, () -> MicroBatch.split(w, new long[] {1, 2, 3, 4}, 0));
    }
}
