package io.dtrain.optim;

import io.dtrain.compute.ComputeThreads;
import io.dtrain.compute.Workers;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * What the optimizer's float32 sweeps over the flat buffers share: absolute-indexed native-order views, the
 * Vector API's preferred lanes, and a split of a range over the process's compute threads (small ranges stay on
 * the calling thread, where waking the team would cost more than it saves).
 */
final class FloatLanes {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final int SERIAL_BELOW = 1 << 16;

    /** The body of a sweep over elements [from, to) of a range. */
    @FunctionalInterface
    interface Share {
        void run(int from, int to);
    }

    private FloatLanes() {
    }

    /** Elements [from, to) of a flat float32 buffer, indexed from 0 (bytes 4i .. 4i+3 are element from + i). */
    static ByteBuffer bytes(INDArray flat, long from, long to) {
        return NioViews.bytes(flat, from, to).slice().order(NATIVE);
    }

    static FloatVector load(ByteBuffer b, int i) {
        return FloatVector.fromByteBuffer(F, b, i << 2, NATIVE);
    }

    static void store(FloatVector v, ByteBuffer b, int i) {
        v.intoByteBuffer(b, i << 2, NATIVE);
    }

    /** Runs {@code body} over [0, n), split in contiguous shares over the compute threads. */
    static void forEachShare(int n, Share body) {
        Workers team = ComputeThreads.shared();
        if (n < SERIAL_BELOW || team.size() == 1) {
            body.run(0, n);
            return;
        }
        team.run(t -> body.run(t.from(n), t.to(n)));
    }
}
