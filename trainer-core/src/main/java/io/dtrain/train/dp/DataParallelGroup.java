package io.dtrain.train.dp;

import io.dtrain.parallel.FlatBuffer;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.ReduceOp;
import io.dtrain.train.RankSums;
import io.dtrain.train.TrainingException;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

/**
 * The replicas of one data-parallel group (the world, or with pipeline parallelism the D ranks of a stage) and
 * what they agree on: the start state (broadcast from the group's first rank), the mean loss, the gradients
 * averaged as one AllReduce, and that they resumed from the same checkpoint. The ring AllReduce gives every rank
 * the same bits, so the replicas never drift apart and a rerun repeats itself exactly.
 *
 * <p>Averaging the ranks' micro-batch means equals the one-process mean over all micro-batches because every rank
 * runs the same number of equally sized micro-batches (the loader guarantees it).
 *
 * <p>A pipeline stage without replicas (D = 1) is a group of one: {@link #of} with no process group, and every
 * operation leaves the values as they are.
 */
public final class DataParallelGroup {
    private final ProcessGroup group;
    private final INDArray scalar = Nd4j.zeros(DataType.DOUBLE, 1);
    private long gradientBytes;

    private DataParallelGroup(ProcessGroup group) {
        this.group = group;
    }

    /** @param group the replicas; null for a group of one */
    public static DataParallelGroup of(ProcessGroup group) {
        return new DataParallelGroup(group);
    }

    /** The process group of the replicas (null for a group of one). */
    public ProcessGroup processGroup() {
        return group;
    }

    /** This rank's index among the replicas. */
    public int rank() {
        return group == null ? 0 : group.rank();
    }

    public int size() {
        return group == null ? 1 : group.size();
    }

    /** Overwrites {@code flat} (1-D, contiguous) on every replica with the first replica's values. */
    public void broadcastFromFirst(INDArray flat, String what) {
        if (group != null) {
            group.broadcastAsync(FlatBuffer.of(flat), group.worldRanks()[0], what).await();
        }
    }

    /**
     * Replaces the flat gradients by their mean over the replicas, as one AllReduce (in place when they are the
     * group's shared buffer, {@link SharedGradients}).
     */
    public void averageGradients(FlatBuffer grads) {
        if (group != null) {
            long before = group.bytesSent();
            group.allReduceAsync(grads, ReduceOp.AVG, "gradients").await();
            gradientBytes += group.bytesSent() - before;
        }
    }

    /** The mean over the replicas of their mean micro-batch losses. */
    public double averageLoss(double meanLocalLoss) {
        if (group == null) {
            return meanLocalLoss;
        }
        scalar.putScalar(0, meanLocalLoss);
        group.allReduceAsync(FlatBuffer.of(scalar), ReduceOp.AVG, "loss").await();
        return scalar.getDouble(0);
    }

    /** Replaces each element of {@code values} by its sum over the replicas. */
    public void sum(double[] values, String what) {
        if (group != null) {
            RankSums.sum(group, values, what);
        }
    }

    /**
     * Every replica read the checkpoint itself; the first replica's counters are broadcast and compared, so a rank
     * that read another checkpoint fails here instead of silently training a different model. The caller then
     * broadcasts the state the replicas share (as DDP and Horovod do).
     */
    public void checkSameResume(Path checkpointDir, long step, long adamStep, long tokensSeen) {
        if (group == null) {
            return;
        }
        double[] mine = {step, adamStep, tokensSeen};
        INDArray counters = Nd4j.createFromArray(mine.clone());
        broadcastFromFirst(counters, "resume counters");
        double[] first = counters.toDoubleVector();
        if (!Arrays.equals(mine, first)) {
            throw new TrainingException(String.format(Locale.ROOT, "rank %d resumed from %s at step %d (AdamW step %d,"
                            + " %d tokens) but rank %d at step %d (AdamW step %d, %d tokens): all ranks must resume from"
                            + " the same checkpoint; put output.dir on a file system every node sees, or pass the same"
                            + " --resume", group.worldRank(), checkpointDir, step, adamStep, tokensSeen,
                    group.worldRanks()[0], (long) first[0], (long) first[1], (long) first[2]));
        }
    }

    /** Bytes this rank sent in {@link #averageGradients} so far. */
    public long gradientBytesSent() {
        return gradientBytes;
    }
}
