package io.dtrain.train.dp;

import io.dtrain.parallel.FlatBuffer;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.ReduceOp;
import io.dtrain.train.GradientSync;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Synchronous data parallelism: once per step, after the last micro-batch, the flat gradient buffer is AllReduced
 * (AVG) as one collective, then the scalar loss; or, after {@link #useBuckets}, in buckets that the trainer
 * launches during the backward pass (DDP's overlap), then the loss. The ring AllReduce gives every
 * rank the same bits, so the replicas never drift apart and a rerun repeats itself exactly.
 *
 * <p>Averaging the ranks' micro-batch means equals the one-process mean over all micro-batches because every rank
 * runs the same number of equally sized micro-batches (the loader guarantees it).
 */
public final class DataParallelSync implements GradientSync {
    private final ProcessGroup group;
    private final INDArray scalar = Nd4j.zeros(DataType.DOUBLE, 1);
    private long gradientBytes;
    private GradientBuckets buckets;

    public DataParallelSync(ProcessGroup group) {
        this.group = group;
    }

    @Override
    public double clockOffsetToRank0Ms() {
        // ProcessGroup reports rank 0's clock minus ours; the metrics want ours minus rank 0's.
        return -group.clockOffsetToRank0Nanos() / 1e6;
    }

    public ProcessGroup group() {
        return group;
    }

    @Override
    public double averageLossAndGradients(double meanLocalLoss, INDArray gradSum, int microBatches) {
        if (microBatches > 1) {
            gradSum.divi(microBatches);
        }
        averageGradients(gradSum);
        return averageLoss(meanLocalLoss);
    }

    /** Replaces the flat gradients by their mean over the group, as one AllReduce. */
    public void averageGradients(INDArray grads) {
        long before = group.bytesSent();
        group.allReduceAsync(FlatBuffer.of(grads), ReduceOp.AVG, "gradients").await();
        gradientBytes += group.bytesSent() - before;
    }

    /**
     * Switches gradient averaging to buckets (see {@link GradientBuckets}): the trainer launches them during the
     * backward pass and then calls {@link #averageLoss}; their bytes count in {@link #gradientBytesSent()}.
     */
    public GradientBuckets useBuckets(long[][] stageRanges, long bufferLength, long maxBucketElements) {
        buckets = new GradientBuckets(group, stageRanges, bufferLength, maxBucketElements);
        return buckets;
    }

    /** The mean over the ranks of their mean micro-batch losses (the gradients went separately, in buckets). */
    public double averageLoss(double meanLocalLoss) {
        scalar.putScalar(0, meanLocalLoss);
        group.allReduceAsync(FlatBuffer.of(scalar), ReduceOp.AVG, "loss").await();
        return scalar.getDouble(0);
    }

    @Override
    public void broadcastFromRank0(INDArray flat, String what) {
        group.broadcastAsync(FlatBuffer.of(flat), group.worldRanks()[0], what).await();
    }

    @Override
    public void sumAcrossRanks(double[] values) {
        INDArray buf = Nd4j.createFromArray(values.clone());
        group.allReduceAsync(FlatBuffer.of(buf), ReduceOp.SUM, "totals").await();
        for (int i = 0; i < values.length; i++) {
            values[i] = buf.getDouble(i);
        }
    }

    @Override
    public long gradientBytesSent() {
        return gradientBytes + (buckets == null ? 0 : buckets.bytesSent());
    }
}
