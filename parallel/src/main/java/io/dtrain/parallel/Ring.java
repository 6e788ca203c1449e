package io.dtrain.parallel;

import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;

/**
 * The ring of one process group: a link to the next member and one from the previous one (a shared-memory
 * {@link ShmLink} within a host, else an Aeron stream; see {@link RingLinks}), and the collectives on top. This class
 * is their schedule: which segment of the buffer each member sends and receives at each ring step, and in which order
 * frames go; how one frame is claimed, sent, checked and reduced on the links is {@link RingFrames}. Runs on the
 * communication thread only (one op at a time), allocation-free per frame.
 *
 * <p>Words: a <em>frame</em> is one message on a link (a {@link Frame} header and at most the group's frame payload);
 * a <em>burst</em> is {@link #BURST_FRAMES} consecutive frames of one segment; <em>slice</em> l is the l-th burst of
 * every segment. All collectives are pipelined ring passes over frames, slice by slice: the frame a member sends at
 * ring step g > 0 is the one it received at step g-1, reduced or copied straight from the incoming link's buffer
 * into the outgoing one in the same pass, so sending, receiving and adding overlap at frame
 * granularity and each byte is touched as few times as the ring allows. A segment is reduced along the ring in a
 * fixed order, its final value (divided by the group size for AVG) is computed once by its owner and then only
 * copied around, so every member gets the same bits on every run.
 */
final class Ring implements AutoCloseable {
    /**
     * Frames per burst, the part of one segment in one slice (see {@link #runRing}): 16 x 64 KiB = 1 MiB, half the
     * smallest link window (ipc: term/2 = 2 MiB; udp: 4 MiB; shm: 4 MiB), so a received frame waiting for room to
     * forward it always gets it.
     */
    static final int BURST_FRAMES = 16;

    final Communicator comm;
    private final HealthMonitor health;
    final String groupKey;
    final int[] members;
    final int index;
    final int size;
    final int prevRank;
    final int nextRank;
    private final RingFrames frames;
    /** AllReduce and Barrier up to {@link WorldConfig#shmAllReduceMaxBytes} when every member is on this host; else null. */
    private final ShmExchange exchange;
    private final IdleStrategy idle = new BackoffIdleStrategy(20, 50, TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MICROSECONDS.toNanos(100));
    private final long[] segmentStart;

    // The running collective's schedule (comm thread only).
    private int frameElements;
    private long burstElements;
    private int slices;
    private int steps;
    private int reduceSteps;
    private int shift;
    private final Cursor send = new Cursor();
    private final Cursor recv = new Cursor();
    private long lastProgressNs;

    Ring(Communicator comm, String groupKey, int[] members, int streamBase) {
        this.comm = comm;
        this.health = comm.health();
        this.groupKey = groupKey;
        this.members = members.clone();
        this.size = members.length;
        this.index = indexOf(members, comm.rank());
        this.prevRank = members[Math.floorMod(index - 1, size)];
        this.nextRank = members[Math.floorMod(index + 1, size)];
        this.segmentStart = new long[size + 1];
        this.frames = new RingFrames(this, streamBase);
        // A throttled ring stands for a slower link between hosts (benchmarks, tests): no exchange then.
        this.exchange = size > 1 && comm.config().shmAllReduceMaxBytes() > 0 && comm.config().throttleBytesPerSecond() == 0
                && Arrays.stream(members).allMatch(comm::sharesMemoryWith) ? ShmExchange.open(this, comm) : null;
        if (exchange != null) {
            warmUpExchange();
        }
    }

    /**
     * A few thousand small AllReduces through the exchange while the group forms (~0.1-0.3 s), so that its code runs
     * compiled from the first real call: a job calls small collectives too rarely for the JIT to get there soon
     * (a 4 KiB AllReduce took 46 us for its first 50 calls, 8 us after 200).
     */
    private void warmUpExchange() {
        warmingUp = true;
        for (ElementType type : ElementType.values()) {
            int rounds = type == ElementType.FLOAT32 ? 3000 : 500;
            for (int elements : new int[] {16, ShmExchange.DIRECT_MAX_BYTES / type.bytes() * 4}) {
                java.nio.ByteBuffer scratch = java.nio.ByteBuffer.allocateDirect(elements * type.bytes())
                        .order(java.nio.ByteOrder.nativeOrder());
                FlatBuffer buffer = FlatBuffer.of(scratch, type);
                for (int i = 0; i < (elements == 16 ? rounds : rounds / 10); i++) {
                    begin(Frame.BARRIER, "shared-memory exchange warm-up", -1, buffer, ReduceOp.AVG);
                    exchange.allReduce(buffer, ReduceOp.AVG, Frame.BARRIER, "shared-memory exchange warm-up".hashCode(), -1);
                }
            }
            // The in-place path of shared buffers (allocateBuffer; above the direct algorithm's size).
            FlatBuffer buffer = exchange.buffers.allocate(ShmExchange.DIRECT_MAX_BYTES / type.bytes() * 4, type);
            for (int i = 0; buffer != null && i < rounds / 3; i++) {
                begin(Frame.BARRIER, "shared-memory exchange warm-up", -1, buffer, ReduceOp.AVG);
                exchange.allReduce(buffer, ReduceOp.AVG, Frame.BARRIER, "shared-memory exchange warm-up".hashCode(), -1);
            }
        }
        warmingUp = false;
    }

    static int indexOf(int[] members, int rank) {
        for (int i = 0; i < members.length; i++) {
            if (members[i] == rank) {
                return i;
            }
        }
        return -1;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Collectives (comm thread)

    void allReduce(FlatBuffer buffer, ReduceOp op, String name, long sequence) {
        begin(Frame.ALL_REDUCE, name, sequence, buffer, op);
        if (useExchange(buffer)) {
            exchange.allReduce(buffer, op, Frame.ALL_REDUCE, name.hashCode(), sequence);
            return;
        }
        for (int s = 0; s <= size; s++) {
            segmentStart[s] = (long) s * buffer.elements() / size;
        }
        runRing(2 * size - 2, size - 1, 0);
    }

    /** {@code buffer} holds size equal segments; this member's segment is already in place. */
    void allGather(FlatBuffer buffer, String name, long sequence) {
        begin(Frame.ALL_GATHER, name, sequence, buffer, null);
        equalSegments(buffer.elements());
        runRing(size - 1, 0, 0);
    }

    /** Reduces size equal segments of {@code buffer} in place; this member's segment ends up final. */
    void reduceScatter(FlatBuffer buffer, ReduceOp op, String name, long sequence) {
        begin(Frame.REDUCE_SCATTER, name, sequence, buffer, op);
        equalSegments(buffer.elements());
        runRing(size - 1, size - 1, -1);
    }

    void barrier(FlatBuffer scratch, String name, long sequence) {
        begin(Frame.BARRIER, name, sequence, scratch, ReduceOp.SUM);
        if (useExchange(scratch)) {
            exchange.allReduce(scratch, ReduceOp.SUM, Frame.BARRIER, name.hashCode(), sequence);
            return;
        }
        for (int s = 0; s <= size; s++) {
            segmentStart[s] = (long) s * scratch.elements() / size;
        }
        runRing(2 * size - 2, size - 1, 0);
    }

    /** Pipelined along the ring from {@code rootIndex}: each member forwards a frame as soon as it has it. */
    void broadcast(FlatBuffer buffer, int rootIndex, String name, long sequence) {
        begin(Frame.BROADCAST, name, sequence, buffer, null);
        if (size == 1) {
            return;
        }
        long totalElements = buffer.elements();
        long frameCount = (totalElements + frameElements - 1) / frameElements;
        boolean root = index == rootIndex;
        boolean forward = Math.floorMod(index + 1, size) != rootIndex;
        long sent = root || forward ? 0 : frameCount;
        long received = root ? frameCount : 0;
        lastProgressNs = System.nanoTime();
        while (sent < frameCount || received < frameCount) {
            int work = 0;
            if (sent < frameCount && sent < received) {
                long offset = sent * frameElements;
                if (frames.offer(0, offset, (int) Math.min(frameElements, totalElements - offset))) {
                    sent++;
                    work++;
                }
            }
            if (received < frameCount) {
                long offset = received * frameElements;
                if (frames.poll(0, offset, (int) Math.min(frameElements, totalElements - offset), false, false, false)) {
                    received++;
                    work++;
                }
            }
            progress(work);
        }
    }

    boolean hasExchange() {
        return exchange != null;
    }

    /** While true, calls warm the code up: the exchange does not count them as frames sent (the kill-after-frames hook). */
    boolean warmingUp;

    /**
     * Whether this AllReduce goes through the shared-memory exchange rather than the ring (same answer on every member
     * that passes the same kind of buffer): up to the size threshold, and at any size for a buffer from
     * {@link #allocateBuffer}, which the exchange reduces in place.
     */
    private boolean useExchange(FlatBuffer buffer) {
        return exchange != null && (buffer.byteLength() <= comm.config().shmAllReduceMaxBytes() || exchange.buffers.locate(buffer) >= 0);
    }

    /**
     * A buffer for this group's collectives: in shared memory when the group has an exchange (every member calls this
     * with the same arguments in the same order), else an ordinary direct buffer; zero-filled either way.
     */
    FlatBuffer allocateBuffer(long elements, ElementType type) {
        FlatBuffer shared = allocateShared(elements, type);
        if (shared != null) {
            return shared;
        }
        long bytes = elements * type.bytes();
        if (bytes > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("a buffer of " + bytes + " bytes is over 2 GiB; allocate it as an ND4J array");
        }
        java.nio.ByteBuffer buffer = java.nio.ByteBuffer.allocateDirect((int) bytes).order(java.nio.ByteOrder.nativeOrder());
        return FlatBuffer.of(buffer, type);
    }

    private void begin(int kind, String name, long sequence, FlatBuffer buffer, ReduceOp op) {
        frames.begin(kind, name, sequence, buffer, op);
        this.frameElements = Math.max(1, frames.maxPayloadBytes / buffer.type().bytes());
        this.burstElements = (long) BURST_FRAMES * frameElements;
    }

    private void equalSegments(long elements) {
        long segment = elements / size;
        for (int s = 0; s <= size; s++) {
            segmentStart[s] = s * segment;
        }
    }

    private int sendSegment(int step) {
        return Math.floorMod(index - step + shift, size);
    }

    private int recvSegment(int step) {
        return sendSegment(step + 1);
    }

    private long burstStart(int slice, int segment) {
        return segmentStart[segment] + (long) slice * burstElements;
    }

    /** Frames of the burst of {@code segment} in {@code slice}; 0 past the segment's end (short segments, tails). */
    private int framesIn(int slice, int segment) {
        long start = burstStart(slice, segment);
        long end = Math.min(segmentStart[segment + 1], start + burstElements);
        return start >= end ? 0 : (int) ((end - start + frameElements - 1) / frameElements);
    }

    /**
     * The ring over slices: every segment is cut into bursts of {@link #BURST_FRAMES} frames, and slice l (burst l of
     * every segment) goes through ring steps 0..steps-1: at step g send the burst of segment (index - g + shift) and
     * receive that of segment (index - g - 1 + shift), reducing for g < reduceSteps (dividing by size at the last reduce step for AVG),
     * copying after. Slices follow each other without a pause: the wire order is (slice, step, frame) on every link.
     *
     * <p>Only step 0 sends from the caller's buffer. Every later frame is sent by the receive of the same burst one
     * step earlier, in one pass over the received frame (see {@link RingFrames#poll}): reduce (or copy) it straight into
     * the claim of the frame that forwards it. So a received frame must wait until the sender is exactly at its
     * forward; with bursts of at most half a link's window, every link always has room for that,
     * whatever the other members do (no cycle of full links), which the whole-segment ring of before could not
     * give. The last step's frames are only copied, once this member sent what it overwrites.
     */
    private void runRing(int steps, int reduceSteps, int shift) {
        if (steps == 0) {
            return; // a group of one
        }
        frames.restartThrottle();
        this.steps = steps;
        this.reduceSteps = reduceSteps;
        this.shift = shift;
        long longestSegment = 0;
        for (int s = 0; s < size; s++) {
            longestSegment = Math.max(longestSegment, segmentStart[s + 1] - segmentStart[s]);
        }
        slices = (int) ((longestSegment + burstElements - 1) / burstElements);
        send.start();
        recv.start();
        lastProgressNs = System.nanoTime();
        while (!send.done() || !recv.done()) {
            int work = 0;
            if (!send.done() && send.step == 0) {
                int segment = sendSegment(0);
                long offset = burstStart(send.slice, segment) + (long) send.frame * frameElements;
                int count = (int) Math.min(frameElements, segmentStart[segment + 1] - offset);
                if (frames.offer(0, offset, count)) {
                    work++;
                    send.advance();
                }
            }
            if (!recv.done()) {
                boolean forward = recv.step + 1 < steps;
                if (forward ? send.isAt(recv.slice, recv.step + 1, recv.frame) : send.isAfter(recv.slice, recv.step, recv.frame)) {
                    int segment = recvSegment(recv.step);
                    long offset = burstStart(recv.slice, segment) + (long) recv.frame * frameElements;
                    int count = (int) Math.min(frameElements, segmentStart[segment + 1] - offset);
                    boolean reduce = recv.step < reduceSteps;
                    boolean last = recv.step == reduceSteps - 1;
                    if (frames.poll(recv.step, offset, count, reduce, last, forward)) {
                        work++;
                        recv.advance();
                        if (forward) {
                            send.advance();
                        }
                    }
                }
            }
            progress(work);
        }
    }

    /** A position (slice, step, frame) in the order frames go over a link; never at an empty burst. */
    private final class Cursor {
        int slice;
        int step;
        int frame;

        void start() {
            slice = 0;
            step = 0;
            frame = -1;
            advance();
        }

        void advance() {
            frame++;
            while (slice < slices && frame >= framesIn(slice, this == send ? sendSegment(step) : recvSegment(step))) {
                frame = 0;
                if (++step == steps) {
                    step = 0;
                    slice++;
                }
            }
        }

        boolean done() {
            return slice >= slices;
        }

        boolean isAt(int slice, int step, int frame) {
            return this.slice == slice && this.step == step && this.frame == frame;
        }

        boolean isAfter(int slice, int step, int frame) {
            return this.slice != slice ? this.slice > slice : this.step != step ? this.step > step : this.frame > frame;
        }
    }

    private void progress(int work) {
        if (work > 0) {
            lastProgressNs = System.nanoTime();
            idle.reset();
            return;
        }
        String failed = health.failureOf(members);
        if (failed != null) {
            throw health.fail(this, failed, false);
        }
        if (frames.incomingClosed()) {
            throw failLost("rank " + prevRank + " (previous in the ring) is gone: its stream closed"
                    + " (the process died or closed its process group)");
        }
        if (exchange != null) {
            frames.checkNoExchangePeerDiffers(exchange);
        }
        checkTimeout(lastProgressNs);
        idle.idle();
    }

    /** While waiting without progress since {@code sinceNs} (outside the ring's loop): a member's failure or the timeout. */
    void checkWaiting(long sinceNs) {
        String failed = health.failureOf(members);
        if (failed != null) {
            throw health.fail(this, failed, false);
        }
        checkTimeout(sinceNs);
    }

    private void checkTimeout(long sinceNs) {
        if (System.nanoTime() - sinceNs > comm.config().timeout().toNanos()) {
            String reported = health.failureOfNow(members);
            if (reported != null) {
                throw health.fail(this, reported, false);
            }
            throw health.fail(this, health.diagnose(this) + "; no progress for " + comm.config().timeout().toMillis()
                    + " ms (DTRAIN_COLLECTIVE_TIMEOUT)", true);
        }
    }

    /** A neighbour went away: if it (or another member) reported why, that report is the better error. */
    CollectiveException failLost(String reason) {
        String reported = health.failureOfNow(members);
        return reported != null ? health.fail(this, reported, false) : health.fail(this, reason, true);
    }

    // ---------------------------------------------------------------------------------------------------------

    /** A buffer in shared memory (see {@link #allocateBuffer}), or null on every member where that falls back. */
    FlatBuffer allocateShared(long elements, ElementType type) {
        if (exchange != null && exchange.buffers.fits(elements * type.bytes())) {
            return exchange.buffers.allocate(elements, type);
        }
        return null;
    }

    /** Whether {@code buffer} lies in one of this group's shared buffers (the exchange reduces it in place). */
    boolean isShared(FlatBuffer buffer) {
        return exchange != null && exchange.buffers.locate(buffer) >= 0;
    }

    long bytesSent() {
        return frames.bytesSent.get() + (exchange == null ? 0 : exchange.bytesShared());
    }

    int kind() {
        return frames.kind();
    }

    String opName() {
        return frames.opName();
    }

    long seq() {
        return frames.seq();
    }

    String describeOp() {
        return Frame.kindName(kind()) + " '" + opName() + "' #" + seq();
    }

    String describeGroup() {
        return groupKey + " " + Arrays.toString(members);
    }

    @Override
    public void close() {
        if (exchange != null) {
            exchange.close();
        }
        frames.close();
    }

}
