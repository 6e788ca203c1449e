package io.dtrain.train.dp;

import io.dtrain.optim.GradClipper;
import io.dtrain.parallel.FlatBuffer;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.ReduceOp;
import io.dtrain.train.RankSums;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * ZeRO-1 ({@code optimizer.shard_state: true}): group rank r owns elements [r*len, min((r+1)*len, size)) of the
 * flat buffers, len = ceil(size / n), and holds AdamW state for those only. Per step the summed gradients are
 * reduce-scattered (AVG) so each rank receives the averaged gradients of its shard, the global norm is the sum
 * of the shards' sums of squares, each rank updates its shard of the parameters, and the parameters are
 * all-gathered. The collectives need n equal slices, so they work on padded copies of the buffers.
 *
 * <p>Gradients in the group's shared memory ({@link SharedGradients}, every rank on this host) are averaged in place
 * by an AllReduce instead: the shared-memory exchange has no reduce-scatter, and its in-place AllReduce is the same
 * sum per element (every rank's value, in rank order, divided by n) with no copy into a padded buffer and back; it
 * only also writes each rank's 1/n of the result into the others' buffers. The rest of the step reads this rank's
 * shard only, so nothing else changes.
 */
public final class ZeroOneSharding {
    private final ProcessGroup group;
    private final long size;
    private final long sliceLength;
    private final long from;
    private final long to;
    private final INDArray padded;
    private final INDArray slice;
    private long gradientBytes;

    public ZeroOneSharding(ProcessGroup group, long size, DataType dtype) {
        this.group = group;
        this.size = size;
        int n = group.size();
        this.sliceLength = (size + n - 1) / n;
        this.from = Math.min(size, group.rank() * sliceLength);
        this.to = Math.min(size, from + sliceLength);
        this.padded = Nd4j.zeros(dtype, sliceLength * n);
        this.slice = Nd4j.zeros(dtype, sliceLength);
    }

    /** First element of this rank's shard. */
    public long from() {
        return from;
    }

    /** End (exclusive) of this rank's shard. */
    public long to() {
        return to;
    }

    /**
     * Divides the summed gradients by the micro-batch count and replaces this rank's shard of {@code grads} by its
     * average over the ranks. The rest of {@code grads} is not used afterwards: it is this rank's local sums, or, for
     * gradients in the group's shared memory ({@code gradients.shared()}, averaged in place), the average too.
     */
    public void reduceScatterGradients(SharedGradients gradients, int microBatches) {
        INDArray grads = gradients.array();
        if (microBatches > 1) {
            grads.divi(microBatches);
        }
        long before = group.bytesSent();
        if (gradients.shared()) {
            group.allReduceAsync(gradients.flat(), ReduceOp.AVG, "gradient shards").await();
        } else {
            padded.get(NDArrayIndex.interval(0, size)).assign(grads);
            group.reduceScatterAsync(FlatBuffer.of(padded), FlatBuffer.of(slice), ReduceOp.AVG, "gradient shards").await();
            if (to > from) {
                grads.get(NDArrayIndex.interval(from, to)).assign(slice.get(NDArrayIndex.interval(0, to - from)));
            }
        }
        gradientBytes += group.bytesSent() - before;
    }

    /** L2 norm of the averaged gradients over all shards (each rank sums its own shard's squares). */
    public double globalNorm(INDArray grads) {
        double[] squares = {GradClipper.sumOfSquares(grads, from, to)};
        RankSums.sum(group, squares, "gradient sum of squares");
        return Math.sqrt(squares[0]);
    }

    /** Every rank's updated shard of {@code params} into everyone's {@code params}. */
    public void allGatherParameters(INDArray params) {
        gather(params, "parameter shards");
    }

    private void gather(INDArray flat, String what) {
        slice.assign(0);
        if (to > from) {
            slice.get(NDArrayIndex.interval(0, to - from)).assign(flat.get(NDArrayIndex.interval(from, to)));
        }
        group.allGatherAsync(FlatBuffer.of(slice), FlatBuffer.of(padded), what).await();
        flat.assign(padded.get(NDArrayIndex.interval(0, size)));
    }

    /** Bytes this rank sent reduce-scattering gradients so far. */
    public long gradientBytesSent() {
        return gradientBytes;
    }
}
