package io.dtrain.parallel;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.RejectedExecutionException;
import java.util.function.Consumer;
import org.agrona.concurrent.UnsafeBuffer;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * A group of worker processes and its collectives, like {@code torch.distributed}'s process group.
 *
 * <p>Every member must issue the same collectives in the same order with the same sizes. Collectives run on the
 * process's one communication thread in issue order; the {@code ...Async} variants return at once with a
 * {@link CollectiveHandle} so the caller can compute meanwhile. A collective whose peers die, stall or call a
 * different collective fails on every member within the configured timeout with a {@link CollectiveException};
 * the group is unusable afterwards.
 *
 * <pre>{@code
 * try (ProcessGroup world = ProcessGroup.fromEnvironment()) {
 *     world.allReduce(gradients, ReduceOp.AVG);
 * }
 * }</pre>
 */
public final class ProcessGroup implements AutoCloseable {
    private static final int WORLD_STREAM_BASE = 0x1000;

    private final Communicator comm;
    private final Ring ring;
    private final boolean ownsCommunicator;
    private final UnsafeBuffer barrierScratch;
    private long nextSeq;
    private UnsafeBuffer scratch = new UnsafeBuffer(ByteBuffer.allocateDirect(0));
    private boolean closed;

    private ProcessGroup(Communicator comm, Ring ring, boolean ownsCommunicator) {
        this.comm = comm;
        this.ring = ring;
        this.ownsCommunicator = ownsCommunicator;
        this.barrierScratch = new UnsafeBuffer(ByteBuffer.allocateDirect(Math.max(1, ring.size) * 4).order(ByteOrder.nativeOrder()));
        if (ring.hasExchange()) {
            // The blocking call's own path (issue, run, the health bookkeeping) compiled before the first real call,
            // as the exchange's loops are (Ring.warmUpExchange); then sequence numbers start at 0 as everywhere.
            ring.warmingUp = true;
            for (int i = 0; i < 2000; i++) {
                barrier();
            }
            ring.warmingUp = false;
            nextSeq = 0;
        }
    }

    /** Joins the job: rendezvous, media driver, ring. Blocks until every rank has joined (rendezvous timeout). */
    public static ProcessGroup init(WorldConfig config) {
        Communicator comm = Communicator.start(config);
        try {
            // Settings every member must share, checked before the ring is formed: a mismatch would otherwise
            // surface only as a collective that never completes (one rank in the exchange, another on the ring).
            Agreement.requireSameSettings(comm, "transport", config.settingsEqualOnAllRanks());
            int[] world = new int[config.worldSize()];
            Arrays.setAll(world, i -> i);
            return new ProcessGroup(comm, new Ring(comm, "world", world, WORLD_STREAM_BASE), true);
        } catch (RuntimeException e) {
            comm.close();
            throw e;
        }
    }

    /**
     * This rank failed before joining (e.g. its configuration or data is bad): tell the others through the store
     * (best effort), so they stop waiting for it and name it. Does nothing in a single-process world.
     */
    public static void reportFailedBringUp(WorldConfig config, String message) {
        if (config.worldSize() > 1) {
            Communicator.reportFailedBringUp(config, message);
        }
    }

    /**
     * World group only, every rank at the same point: checks that every rank holds the same {@code entries} (e.g. its
     * resolved run configuration, key -> value), compared by hash through the store; a mismatch throws a
     * {@link io.dtrain.common.UserFacingException} naming the differing keys and ranks, on every rank.
     */
    public void requireSameEverywhere(String what, java.util.Map<String, String> entries) {
        Agreement.requireSame(comm, what, entries);
    }

    /**
     * World group only, every rank at the same point: checks that every rank holds the same {@code settings} (name ->
     * resolved value, e.g. environment variables that must be equal on every rank), compared by value through the
     * store; a mismatch throws a {@link io.dtrain.common.UserFacingException} naming each differing setting with its
     * values and ranks ("DTRAIN_X differs between ranks (true on rank 0; false on rank 1): ..."), on every rank.
     * {@code what} names the check (its store keys); each check runs once per job.
     */
    public void requireSameSettings(String what, java.util.Map<String, String> settings) {
        Agreement.requireSameSettings(comm, what, settings);
    }

    /** {@link #init} from torchrun-style environment variables (see {@link WorldConfig#fromEnvironment}). */
    public static ProcessGroup fromEnvironment() {
        return init(WorldConfig.fromEnvironment(System.getenv()));
    }

    /**
     * A group of some world ranks (e.g. one pipeline stage), with its own ring and sequence numbers. Every listed rank
     * must call this with the same ranks; ranks not listed must not. Close it before the world group.
     */
    public ProcessGroup subGroup(int... worldRanks) {
        int[] ranks = worldRanks.clone();
        if (ranks.length == 0) {
            throw new IllegalArgumentException("a sub-group needs at least one rank");
        }
        for (int i = 0; i < ranks.length; i++) {
            if (ranks[i] < 0 || ranks[i] >= comm.config().worldSize()) {
                throw new IllegalArgumentException("sub-group rank " + ranks[i] + " is outside the world 0.." + (comm.config().worldSize() - 1));
            }
            for (int j = 0; j < i; j++) {
                if (ranks[i] == ranks[j]) {
                    throw new IllegalArgumentException("sub-group lists rank " + ranks[i] + " twice: " + Arrays.toString(ranks));
                }
            }
        }
        if (Ring.indexOf(ranks, comm.rank()) < 0) {
            throw new IllegalArgumentException("rank " + comm.rank() + " is not in sub-group " + Arrays.toString(ranks));
        }
        String key = "g" + String.join("-", Arrays.stream(ranks).mapToObj(Integer::toString).toArray(String[]::new));
        int streamBase = 0x100000 * (1 + (Arrays.hashCode(ranks) & 0x3FF));
        return new ProcessGroup(comm, new Ring(comm, key, ranks, streamBase), false);
    }

    /**
     * Point-to-point links from this rank to {@code peerWorldRanks} (e.g. the neighbouring pipeline stages). Each
     * peer must open its links under the same name at the same time, listing this rank. Close them before the
     * world group.
     */
    public PeerLinks peerLinks(String name, int... peerWorldRanks) {
        return PeerLinks.open(comm, name, peerWorldRanks);
    }

    /** This process's rank within the group. */
    public int rank() {
        return ring.index;
    }

    public int size() {
        return ring.size;
    }

    /** This process's rank in the world. */
    public int worldRank() {
        return comm.rank();
    }

    /** This process's rank among the job's processes on its host ({@code LOCAL_RANK}). */
    public int localRank() {
        return comm.config().localRank();
    }

    /** The world ranks of the members, in group-rank order. */
    public int[] worldRanks() {
        return ring.members.clone();
    }

    /**
     * Rank 0's wall clock minus this process's wall clock in nanoseconds, measured at rendezvous (NTP-style, best of
     * 16 round trips): add it to a local {@code Instant} to put events of all ranks on rank 0's timeline.
     */
    public long clockOffsetToRank0Nanos() {
        return comm.clockOffsetNanos();
    }

    /**
     * Udp datagrams this host's media driver has dropped because they failed authentication (not from this job's
     * workers, altered, or replayed), over its current links; each rank's log warns when it grows.
     */
    public long udpDatagramsDropped() {
        return comm.udpDatagramsDropped();
    }

    /** Bytes this process has sent on this group's ring (headers included). */
    public long bytesSent() {
        return ring.bytesSent();
    }

    /**
     * A zero-filled buffer of {@code elements} of {@code type} for this group's collectives, like one from
     * {@link FlatBuffer#of}, that AllReduce handles with fewer copies: when every member shares this host's memory
     * (the shared-memory exchange is in use) it lives in shared memory and the members reduce straight from each
     * other's buffers into each other's buffers, at any size; otherwise (or when /dev/shm has no room for it, or it is
     * over 2 GiB per group) it is an ordinary direct buffer, on every member alike. Every member
     * must call this with the same arguments in the same order (like a collective, from one thread), and pass such
     * buffers (or views of them) to the same collectives: a member passing an ordinary buffer where the others pass
     * one of these fails the collective naming it. The buffer stays valid while it is reachable, also after close.
     */
    public FlatBuffer allocateBuffer(long elements, ElementType type) {
        requireOpenForBuffer(elements);
        return ring.allocateBuffer(elements, type);
    }

    /**
     * As {@link #allocateBuffer}, but null (on every member alike) where that would fall back to an ordinary direct
     * buffer: for a caller with its own ordinary buffer (e.g. an ND4J array, not bounded by the JVM's direct memory).
     */
    public FlatBuffer allocateSharedBuffer(long elements, ElementType type) {
        requireOpenForBuffer(elements);
        return ring.allocateShared(elements, type);
    }

    private synchronized void requireOpenForBuffer(long elements) {
        if (elements < 1) {
            throw new IllegalArgumentException("a buffer needs at least one element, got " + elements);
        }
        if (closed) {
            throw new IllegalStateException("process group " + ring.describeGroup() + " is closed");
        }
    }

    /**
     * Whether {@code buffer} lies in a buffer this group allocated in shared memory ({@link #allocateBuffer}), which
     * its AllReduce above 16 KiB reduces in place; false for an ordinary buffer (also {@code allocateBuffer}'s
     * fallback).
     */
    public boolean isSharedBuffer(FlatBuffer buffer) {
        return ring.isShared(buffer);
    }

    // ---------------------------------------------------------------------------------------------------------
    // AllReduce

    public void allReduce(INDArray array, ReduceOp op) {
        allReduce(FlatBuffer.of(array), op);
    }

    public CollectiveHandle allReduceAsync(INDArray array, ReduceOp op, String name) {
        return allReduceAsync(FlatBuffer.of(array), op, name);
    }

    /** Blocking: run on the calling thread when nothing else is queued (no hand-over to the communication thread). */
    public void allReduce(FlatBuffer buffer, ReduceOp op) {
        issue(Frame.ALL_REDUCE, "allReduce", seq -> ring.allReduce(buffer, op, "allReduce", seq), buffer, true).await();
    }

    /** Reduces {@code buffer} in place across the group: every member ends with the same bits. */
    public CollectiveHandle allReduceAsync(FlatBuffer buffer, ReduceOp op, String name) {
        return submit(Frame.ALL_REDUCE, name, seq -> ring.allReduce(buffer, op, name, seq), buffer);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Broadcast

    public void broadcast(INDArray array, int srcWorldRank) {
        broadcastAsync(FlatBuffer.of(array), srcWorldRank, "broadcast").await();
    }

    public void broadcast(FlatBuffer buffer, int srcWorldRank) {
        broadcastAsync(buffer, srcWorldRank, "broadcast").await();
    }

    /** Copies the buffer of world rank {@code srcWorldRank} (a member) into every member's buffer. */
    public CollectiveHandle broadcastAsync(FlatBuffer buffer, int srcWorldRank, String name) {
        int root = Ring.indexOf(ring.members, srcWorldRank);
        if (root < 0) {
            throw new IllegalArgumentException("broadcast source rank " + srcWorldRank + " is not in group " + Arrays.toString(ring.members));
        }
        return submit(Frame.BROADCAST, name, seq -> ring.broadcast(buffer, root, name, seq), buffer);
    }

    // ---------------------------------------------------------------------------------------------------------
    // AllGather

    public void allGather(INDArray input, INDArray output) {
        allGatherAsync(FlatBuffer.of(input), FlatBuffer.of(output), "allGather").await();
    }

    public void allGather(FlatBuffer input, FlatBuffer output) {
        allGatherAsync(input, output, "allGather").await();
    }

    /** {@code output} (size x input length) receives every member's input, in group-rank order. */
    public CollectiveHandle allGatherAsync(FlatBuffer input, FlatBuffer output, String name) {
        checkParts("allGather", input, output);
        long bytes = input.byteLength();
        long at = ring.index * bytes;
        return submit(Frame.ALL_GATHER, name, seq -> {
            copy(input.address(), output.address() + at, bytes);
            ring.allGather(output, name, seq);
        }, output);
    }

    // ---------------------------------------------------------------------------------------------------------
    // ReduceScatter

    public void reduceScatter(INDArray input, INDArray output, ReduceOp op) {
        reduceScatterAsync(FlatBuffer.of(input), FlatBuffer.of(output), op, "reduceScatter").await();
    }

    public void reduceScatter(FlatBuffer input, FlatBuffer output, ReduceOp op) {
        reduceScatterAsync(input, output, op, "reduceScatter").await();
    }

    /**
     * Reduces {@code input} (size x output length) across the group; {@code output} receives this member's
     * slice (group rank r gets elements [r*len, (r+1)*len)). {@code input} is left unchanged.
     */
    public CollectiveHandle reduceScatterAsync(FlatBuffer input, FlatBuffer output, ReduceOp op, String name) {
        checkParts("reduceScatter", output, input);
        long bytes = output.byteLength();
        return submit(Frame.REDUCE_SCATTER, name, seq -> {
            UnsafeBuffer work = scratch(input.byteLength());
            copy(input.address(), work.addressOffset(), input.byteLength());
            ring.reduceScatter(FlatBuffer.ofAddress(work, work.addressOffset(), input.elements(), input.type()), op, name, seq);
            copy(work.addressOffset() + ring.index * bytes, output.address(), bytes);
        }, input);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Barrier

    /** Returns once every member has entered the barrier. */
    public void barrier() {
        FlatBuffer buffer = FlatBuffer.ofAddress(barrierScratch, barrierScratch.addressOffset(), ring.size, ElementType.FLOAT32);
        issue(Frame.BARRIER, "barrier", seq -> ring.barrier(buffer, "barrier", seq), buffer, true).await();
    }

    public CollectiveHandle barrierAsync(String name) {
        FlatBuffer buffer = FlatBuffer.ofAddress(barrierScratch, barrierScratch.addressOffset(), ring.size, ElementType.FLOAT32);
        return submit(Frame.BARRIER, name, seq -> ring.barrier(buffer, name, seq), buffer);
    }

    // ---------------------------------------------------------------------------------------------------------

    private CollectiveHandle submit(int kind, String name, SeqTask task, FlatBuffer keepAlive) {
        return issue(kind, name, task, keepAlive, false);
    }

    /**
     * Issues a collective in this process's issue order: queued for the communication thread, or, for a blocking
     * call ({@code inline}) when nothing else is queued or running, run right here on the caller's thread.
     */
    private CollectiveHandle issue(int kind, String name, SeqTask task, FlatBuffer keepAlive, boolean inline) {
        long seq;
        boolean here;
        String description;
        CompletableFuture<Void> future = new CompletableFuture<>();
        synchronized (comm.issueLock()) {
            synchronized (this) {
                if (closed) {
                    throw new IllegalStateException("process group " + ring.describeGroup() + " is closed");
                }
                seq = nextSeq++;
            }
            description = Frame.kindName(kind) + " '" + name + "' #" + seq + " in group " + ring.describeGroup();
            here = inline && comm.tryStartInline();
            if (!here) {
                comm.queue();
                long queuedSeq = seq;
                String queuedDescription = description;
                try {
                    comm.commThread().execute(() -> comm.runQueued(() -> run(task, queuedSeq, queuedDescription, future, keepAlive)));
                } catch (RejectedExecutionException e) {
                    throw new IllegalStateException("process group " + ring.describeGroup() + " is closed", e);
                }
            }
        }
        if (here) {
            try {
                run(task, seq, description, future, keepAlive);
            } finally {
                comm.finishInline();
            }
        }
        return new CollectiveHandle(description, future);
    }

    private void run(SeqTask task, long seq, String description, CompletableFuture<Void> future, FlatBuffer keepAlive) {
        CollectiveException earlier = comm.health().broken();
        if (earlier != null) {
            future.completeExceptionally(new CollectiveException(description + " not run: the process group failed"
                    + " earlier: " + earlier.getMessage(), earlier));
            return;
        }
        comm.health().started(ring);
        try {
            task.run(seq);
            future.complete(null);
        } catch (Throwable t) {
            future.completeExceptionally(t);
        } finally {
            comm.health().finished();
            // The buffer's owner must stay reachable until the collective is done.
            java.lang.ref.Reference.reachabilityFence(keepAlive.owner());
        }
    }

    @FunctionalInterface
    private interface SeqTask {
        void run(long seq);
    }

    private void checkParts(String op, FlatBuffer part, FlatBuffer whole) {
        if (part.type() != whole.type()) {
            throw new IllegalArgumentException(op + ": input is " + part.type() + " but output is " + whole.type());
        }
        if (part.elements() * ring.size != whole.elements()) {
            throw new IllegalArgumentException(op + ": the whole buffer must hold group size (" + ring.size + ") x "
                    + part.elements() + " = " + part.elements() * ring.size + " elements, it holds " + whole.elements());
        }
    }

    /** Grows (never on the steady-state path) the comm thread's scratch buffer. */
    private UnsafeBuffer scratch(long bytes) {
        if (scratch.capacity() < bytes) {
            if (bytes > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("reduceScatter input of " + bytes + " bytes is over 2 GiB; split it");
            }
            scratch = new UnsafeBuffer(ByteBuffer.allocateDirect((int) bytes).order(ByteOrder.nativeOrder()));
        }
        return scratch;
    }

    private static void copy(long from, long to, long bytes) {
        if (bytes > 0 && from != to) {
            org.agrona.UnsafeApi.copyMemory(from, to, bytes);
        }
    }

    /** Waits for issued collectives, then leaves the group (the world group also leaves the job). */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        if (ownsCommunicator) {
            comm.close(ring);
        } else {
            try {
                comm.commThread().submit(() -> { }).get();
            } catch (Exception e) {
                // the comm thread is gone: nothing in flight
            }
            ring.close();
        }
    }
}
