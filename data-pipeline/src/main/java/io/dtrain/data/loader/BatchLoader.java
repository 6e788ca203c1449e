package io.dtrain.data.loader;

import java.util.Iterator;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Serves one data-parallel rank's micro-batches, Megatron style: global step {@code k} is positions
 * {@code [k*G, (k+1)*G)} of epoch {@code k / stepsPerEpoch}'s {@link SampleOrder} (taken modulo stepsPerEpoch);
 * rank {@code r} of {@code w} takes the {@code r}-th {@code G/w} of them and micro-batch {@code j} is the
 * {@code j}-th {@code b} of those. The ranks together therefore see exactly the global batch one rank would, and
 * the only loader state to checkpoint is the next global step, valid for any world size.
 *
 * <p>A background thread builds the next step's micro-batches while the current step trains; {@link #microBatch}
 * returns them when ready and counts the time it had to wait ({@link #dataWaitNanos()}).
 */
public final class BatchLoader implements AutoCloseable {
    private final TokenDataset ds;
    private final int globalBatch;
    private final int microBatch;
    private final int rank;
    private final int world;
    private final SampleOrder order;
    private final long stepsPerEpoch;
    private final int microBatchesPerStep;
    private final ExecutorService prefetcher;
    private final TreeMap<Long, Future<MicroBatch[]>> ahead = new TreeMap<>();
    private long dataWaitNanos;

    public BatchLoader(TokenDataset ds, int globalBatch, int microBatch, int rank, int world, long seed) {
        if (globalBatch < 1 || microBatch < 1 || world < 1) {
            throw new IllegalArgumentException("globalBatch (" + globalBatch + "), microBatch (" + microBatch
                    + ") and world (" + world + ") must all be >= 1");
        }
        if (rank < 0 || rank >= world) {
            throw new IllegalArgumentException("rank " + rank + " is outside [0, world=" + world + ")");
        }
        if (globalBatch % ((long) microBatch * world) != 0) {
            throw new IllegalArgumentException("global batch " + globalBatch + " cannot be split into micro-batches of "
                    + microBatch + " on " + world + " data-parallel ranks: " + globalBatch + " is not a multiple of "
                    + microBatch + " x " + world + " = " + ((long) microBatch * world)
                    + "; choose a global batch that is a multiple of micro-batch x data-parallel size");
        }
        if (ds.numSamples() < globalBatch) {
            throw new IllegalArgumentException("the dataset has " + ds.numSamples() + " samples of " + ds.seqLen()
                    + "+1 tokens, fewer than one global batch of " + globalBatch + "; use more data or a smaller batch");
        }
        this.ds = ds;
        this.globalBatch = globalBatch;
        this.microBatch = microBatch;
        this.rank = rank;
        this.world = world;
        this.order = new SampleOrder(ds.numSamples(), seed);
        this.stepsPerEpoch = ds.numSamples() / globalBatch;
        this.microBatchesPerStep = globalBatch / (microBatch * world);
        this.prefetcher = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "dtrain-data-prefetch-rank" + rank);
            t.setDaemon(true);
            return t;
        });
    }

    public int microBatchesPerStep() {
        return microBatchesPerStep;
    }

    public long stepsPerEpoch() {
        return stepsPerEpoch;
    }

    /** Samples per epoch that fit no full global batch and are left out (a different set each epoch). */
    public long droppedPerEpoch() {
        return ds.numSamples() % globalBatch;
    }

    public long epochOf(long step) {
        return step / stepsPerEpoch;
    }

    /** Total time {@link #microBatch} spent waiting for data that was not prefetched yet. */
    public synchronized long dataWaitNanos() {
        return dataWaitNanos;
    }

    /** Micro-batch {@code microIndex} of global step {@code step} for this rank. Any step may be asked (resume). */
    public synchronized MicroBatch microBatch(long step, int microIndex) {
        if (step < 0) {
            throw new IllegalArgumentException("step must be >= 0, got " + step);
        }
        if (microIndex < 0 || microIndex >= microBatchesPerStep) {
            throw new IllegalArgumentException("micro-batch index " + microIndex + " is outside [0, "
                    + microBatchesPerStep + ")");
        }
        Future<MicroBatch[]> current = schedule(step);
        schedule(step + 1);
        for (Iterator<Map.Entry<Long, Future<MicroBatch[]>>> it = ahead.headMap(step).entrySet().iterator(); it.hasNext(); ) {
            it.next().getValue().cancel(false);
            it.remove();
        }
        long t0 = System.nanoTime();
        try {
            MicroBatch[] batches = current.get();
            return batches[microIndex];
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof RuntimeException re) {
                throw re;
            }
            throw new IllegalStateException("building step " + step + " failed", cause);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for step " + step, e);
        } catch (CancellationException e) {
            throw new IllegalStateException("loader closed", e);
        } finally {
            dataWaitNanos += System.nanoTime() - t0;
        }
    }

    private Future<MicroBatch[]> schedule(long step) {
        return ahead.computeIfAbsent(step, s -> prefetcher.submit(() -> buildStep(s)));
    }

    /** All of this rank's micro-batches of global step {@code step}. */
    public MicroBatch[] buildStep(long step) {
        MicroBatch[] out = new MicroBatch[microBatchesPerStep];
        for (int j = 0; j < microBatchesPerStep; j++) {
            out[j] = build(step, j);
        }
        return out;
    }

    private MicroBatch build(long step, int microIndex) {
        long epoch = step / stepsPerEpoch;
        long first = (step % stepsPerEpoch) * globalBatch
                + (long) rank * (globalBatch / world) + (long) microIndex * microBatch;
        int[][] windows = new int[microBatch][ds.seqLen() + 1];
        long[] samples = new long[microBatch];
        for (int i = 0; i < microBatch; i++) {
            samples[i] = order.sampleAt(epoch, first + i);
            ds.window(samples[i], windows[i]);
        }
        return new MicroBatch(windows, samples);
    }

    @Override
    public synchronized void close() {
        ahead.values().forEach(f -> f.cancel(true));
        ahead.clear();
        prefetcher.shutdownNow();
    }
}
