package io.dtrain.train.dp;

import io.dtrain.metrics.Tracer;
import io.dtrain.parallel.CollectiveHandle;
import io.dtrain.parallel.FlatBuffer;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.ReduceOp;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * Gradient averaging in buckets, as PyTorch DDP does: the flat gradient buffer is cut into buckets of at most
 * {@code parallel.dp.bucket_mb}, none straddling two stage ranges, and a stage's buckets are AllReduced (AVG,
 * asynchronously) as soon as that stage's backward of the step's last micro-batch has finished, while the earlier
 * stages still compute. Every rank issues the buckets in the same order (last stage first), so the rings agree.
 *
 * <p>Each element is still divided by the micro-batch count and then averaged over the ranks by the same ring
 * algorithm as the one-buffer AllReduce, so bucketing changes when numbers move, not which numbers come out.
 */
public final class GradientBuckets {
    /** One bucket: elements [from, to) of the flat buffer, inside stage {@code stage}'s range. */
    public record Bucket(int index, int stage, long from, long to) {
        public long length() {
            return to - from;
        }
    }

    private final ProcessGroup group;
    private final List<Bucket> buckets;
    private final List<CollectiveHandle> inFlight = new ArrayList<>();
    /** The completion callbacks: awaited too, so the completion time is recorded before awaitAll reads it. */
    private final List<CompletableFuture<Void>> recorded = new ArrayList<>();
    private volatile long lastCompletionNanos;
    private long bytesAtFirstLaunch = -1;
    private long bytesSent;

    /** @param bufferLength the flat buffer's length: the stage ranges must tile [0, bufferLength) */
    public GradientBuckets(ProcessGroup group, long[][] stageRanges, long bufferLength, long maxBucketElements) {
        this.group = group;
        this.buckets = plan(stageRanges, maxBucketElements);
        long covered = 0;
        for (Bucket b : buckets.stream().sorted(java.util.Comparator.comparingLong(Bucket::from)).toList()) {
            if (b.from() != covered) {
                throw new IllegalArgumentException("stage ranges leave elements [" + covered + ", " + b.from()
                        + ") of the gradient buffer outside every bucket");
            }
            covered = b.to();
        }
        if (covered != bufferLength) {
            throw new IllegalArgumentException("stage ranges cover " + covered + " of " + bufferLength
                    + " gradient elements");
        }
    }

    /** Bucket elements for {@code bucketMb} MiB of elements {@code elementBytes} wide (at least one element). */
    public static long elementsPerBucket(double bucketMb, int elementBytes) {
        return Math.max(1, (long) (bucketMb * 1024 * 1024 / elementBytes));
    }

    /**
     * Cuts each stage's [first, end) range into near-equal buckets of at most {@code maxBucketElements}; empty
     * ranges get none. Buckets are listed in stage order.
     */
    public static List<Bucket> plan(long[][] stageRanges, long maxBucketElements) {
        if (maxBucketElements < 1) {
            throw new IllegalArgumentException("bucket size must be >= 1 element, got " + maxBucketElements);
        }
        List<Bucket> out = new ArrayList<>();
        for (int s = 0; s < stageRanges.length; s++) {
            long first = stageRanges[s][0];
            long length = stageRanges[s][1] - first;
            if (length <= 0) {
                continue;
            }
            long count = (length + maxBucketElements - 1) / maxBucketElements;
            for (long k = 0; k < count; k++) {
                long from = first + length * k / count;
                long to = first + length * (k + 1) / count;
                out.add(new Bucket(out.size(), s, from, to));
            }
        }
        return List.copyOf(out);
    }

    public List<Bucket> buckets() {
        return buckets;
    }

    /**
     * Divides stage {@code stage}'s gradients by the micro-batch count and starts their AllReduce (AVG). Call
     * once per stage per step, after the stage's last backward; the buffer range must not be touched until
     * {@link #awaitAll()} returns. {@code flat} is {@code grads}' memory as the collectives see it: each bucket is
     * reduced as its slice, so a shared buffer of the group ({@link ProcessGroup#allocateBuffer}) is recognised by
     * every member at the same place and reduced in place.
     */
    public void launchStage(int stage, INDArray grads, FlatBuffer flat, int microBatches, Tracer tracer) {
        if (flat.elements() != grads.length() || flat.address() != FlatBuffer.of(grads).address()) {
            throw new IllegalArgumentException("the flat buffer is not the gradient array's memory");
        }
        if (bytesAtFirstLaunch < 0) {
            bytesAtFirstLaunch = group.bytesSent();
        }
        for (Bucket b : buckets) {
            if (b.stage() != stage) {
                continue;
            }
            INDArray view = grads.get(NDArrayIndex.interval(b.from(), b.to()));
            if (microBatches > 1) {
                view.divi(microBatches);
            }
            long start = System.nanoTime();
            CollectiveHandle h = group.allReduceAsync(flat.slice(b.from(), b.to()), ReduceOp.AVG, "gradient bucket " + b.index());
            String name = "allreduce bucket " + b.index() + " (stage " + stage + ")";
            CompletableFuture<Void> record = h.toCompletableFuture().whenComplete((ok, failure) -> {
                long end = System.nanoTime();
                lastCompletionNanos = Math.max(lastCompletionNanos, end);
                tracer.span(name, "comm", start, end);
            });
            inFlight.add(h);
            recorded.add(record);
        }
    }

    /** Waits for every launched bucket (rethrowing a collective's failure); returns when the last one completed. */
    public long awaitAll() {
        for (CollectiveHandle h : inFlight) {
            h.await();
        }
        inFlight.clear();
        for (CompletableFuture<Void> r : recorded) {
            r.join();
        }
        recorded.clear();
        long completed = Math.max(lastCompletionNanos, 0);
        if (bytesAtFirstLaunch >= 0) {
            bytesSent += group.bytesSent() - bytesAtFirstLaunch;
            bytesAtFirstLaunch = -1;
        }
        return completed == 0 ? System.nanoTime() : completed;
    }

    /** Bytes this rank sent in bucket AllReduces so far. */
    public long bytesSent() {
        return bytesSent;
    }
}
