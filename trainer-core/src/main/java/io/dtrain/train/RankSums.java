package io.dtrain.train;

import io.dtrain.parallel.FlatBuffer;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.ReduceOp;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Sums of a few numbers over the ranks of a group: evaluation totals, a pipeline step's loss and squared
 * gradient norm, ZeRO-1's squared norm. In double precision, so every rank gets the same bits.
 */
public final class RankSums {
    private RankSums() {
    }

    /** Replaces each element of {@code values} by its sum over the members of {@code group}. */
    public static void sum(ProcessGroup group, double[] values, String what) {
        INDArray buf = Nd4j.createFromArray(values.clone());
        group.allReduceAsync(FlatBuffer.of(buf), ReduceOp.SUM, what).await();
        for (int i = 0; i < values.length; i++) {
            values[i] = buf.getDouble(i);
        }
    }
}
