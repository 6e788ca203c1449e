package io.dtrain.parallel;

import io.aeron.Publication;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;

/**
 * The ring of one process group: a link to the next member and one from the previous one (a shared-memory
 * {@link ShmLink} within a host, else an Aeron stream; see {@link RingLinks}), and the collectives on top. Runs on
 * the communication thread only (one op at a time), allocation-free per frame.
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
    // Small on purpose: the three terms of an ipc publication (12 MiB) stay in the last-level cache, so writing a frame
    // does not first read a cold line from memory and the receiver reduces out of cache. A 32 MiB term doubled the
    // copy and add time per frame on the 2-core test machine. The price: an ipc publication may run at most
    // term/2 = 2 MiB ahead of its subscriber, and only the driver's conductor moves that limit (see DriverMain).
    static final String IPC_TERM_LENGTH = "4m";
    static final String UDP_TERM_LENGTH = "8m";
    /**
     * Frames per burst, the part of one segment in one slice (see {@link #runRing}): 16 x 64 KiB = 1 MiB, half the
     * smallest link window (ipc: term/2 = 2 MiB; udp: 4 MiB; shm: 4 MiB), so a received frame waiting for room to
     * forward it always gets it.
     */
    static final int BURST_FRAMES = 16;
    private static final long NOT_CONNECTED_GRACE_NS = TimeUnit.SECONDS.toNanos(1);
    /**
     * Benchmark/diagnosis option (DTRAIN_TRANSPORT_THROTTLE): bytes/s this process may send per collective on this
     * ring (0 = off), to make communication comparable to compute on a fast local transport. A throttled frame is
     * retried like a back-pressured one, so timeouts and failure handling stay the same.
     */
    private final long throttleBytesPerS;
    private long throttleStartNs;
    private long throttledBytes;

    final Communicator comm;
    private final HealthMonitor health;
    final String groupKey;
    final int[] members;
    final int index;
    final int size;
    final int prevRank;
    final int nextRank;
    private final RingLinks.Outbound out;
    private final RingLinks.InboundFrames in;
    private final int maxPayloadBytes;
    private final IdleStrategy idle = new BackoffIdleStrategy(20, 50, TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MICROSECONDS.toNanos(100));
    private final FrameReceiver receiver = new FrameReceiver();
    final AtomicLong bytesSent = new AtomicLong();
    private final long[] segmentStart;

    // The running collective (comm thread only).
    private int kind;
    private String opName;
    private int nameHash;
    private long seq;
    private long totalElements;
    private ElementType type;
    private ReduceOp reduceOp;
    private int misc;
    private long baseAddress;
    private int frameElements;
    private long burstElements;
    private int slices;
    private int steps;
    private int reduceSteps;
    private int shift;
    private final Cursor send = new Cursor();
    private final Cursor recv = new Cursor();
    private long lastProgressNs;
    private long notConnectedSinceNs;

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
        this.throttleBytesPerS = comm.config().throttleBytesPerSecond();
        if (size == 1) {
            out = null;
            in = null;
            maxPayloadBytes = comm.config().maxFramePayloadBytes();
            return;
        }
        WorldConfig config = comm.config();
        Duration wait = config.rendezvousTimeout();
        RingLinks.Incoming incoming = RingLinks.openIncoming(comm, groupKey, prevRank, streamBase + index);
        in = incoming.frames();
        comm.store().set("ring/" + groupKey + "/" + comm.rank(), incoming.senderChannel());
        String channel = comm.store().getString("ring/" + groupKey + "/" + nextRank, wait);
        out = RingLinks.openOutgoing(comm, channel, streamBase + Math.floorMod(index + 1, size));
        // Every member must cut buffers into the same frames, so the group uses its smallest frame (MTUs differ
        // between ipc and udp links).
        comm.store().set("payload/" + groupKey + "/" + comm.rank(),
                Integer.toString(Math.min(config.maxFramePayloadBytes(), out.maxFrameLength() - Frame.HEADER_LENGTH)));
        int smallest = Integer.MAX_VALUE;
        for (int member : members) {
            smallest = Math.min(smallest, Integer.parseInt(comm.store().getString("payload/" + groupKey + "/" + member, wait)));
        }
        maxPayloadBytes = smallest;
        long deadline = System.nanoTime() + wait.toNanos();
        while (!out.isConnected() || !in.isConnected()) {
            if (System.nanoTime() > deadline) {
                throw new CollectiveException("group " + groupKey + " on rank " + comm.rank() + ": ring not connected after "
                        + wait.toSeconds() + " s (to rank " + nextRank + ": " + out.isConnected() + ", from rank "
                        + prevRank + ": " + in.isConnected() + ") over " + channel);
            }
            Inbound.pause();
        }
        org.slf4j.LoggerFactory.getLogger(Ring.class).info("group {} rank {}: receiving from rank {} over {}, sending to rank {} over {}, {} B frames",
                groupKey, comm.rank(), prevRank, in.describe(), nextRank, out.describe(), maxPayloadBytes);
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
        long frames = (totalElements + frameElements - 1) / frameElements;
        boolean root = index == rootIndex;
        boolean forward = Math.floorMod(index + 1, size) != rootIndex;
        long sent = root || forward ? 0 : frames;
        long received = root ? frames : 0;
        lastProgressNs = System.nanoTime();
        while (sent < frames || received < frames) {
            int work = 0;
            if (sent < frames && sent < received) {
                long offset = sent * frameElements;
                if (offer(0, offset, (int) Math.min(frameElements, totalElements - offset))) {
                    sent++;
                    work++;
                }
            }
            if (received < frames) {
                long offset = received * frameElements;
                if (poll(0, offset, (int) Math.min(frameElements, totalElements - offset), false, false, false)) {
                    received++;
                    work++;
                }
            }
            progress(work);
        }
    }

    private void begin(int kind, String name, long sequence, FlatBuffer buffer, ReduceOp op) {
        this.kind = kind;
        this.opName = name;
        this.nameHash = name.hashCode();
        this.seq = sequence;
        this.totalElements = buffer.elements();
        this.type = buffer.type();
        this.reduceOp = op;
        this.misc = Frame.misc(buffer.type(), op);
        this.baseAddress = buffer.address();
        this.frameElements = Math.max(1, maxPayloadBytes / type.bytes());
        this.burstElements = (long) BURST_FRAMES * frameElements;
        this.notConnectedSinceNs = 0;
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
     * step earlier, in one pass over the received frame (see {@link FrameReceiver}): reduce (or copy) it straight into
     * the claim of the frame that forwards it. So a received frame must wait until the sender is exactly at its
     * forward; with bursts of at most half a link's window, every link always has room for that,
     * whatever the other members do (no cycle of full links), which the whole-segment ring of before could not
     * give. The last step's frames are only copied, once this member sent what it overwrites.
     */
    private void runRing(int steps, int reduceSteps, int shift) {
        if (steps == 0) {
            return; // a group of one
        }
        throttleStartNs = 0;
        throttledBytes = 0;
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
                if (offer(0, offset, count)) {
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
                    if (poll(recv.step, offset, count, reduce, last, forward)) {
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
        if (in != null && in.isClosed()) {
            throw failLost("rank " + prevRank + " (previous in the ring) is gone: its stream closed"
                    + " (the process died or closed its process group)");
        }
        if (System.nanoTime() - lastProgressNs > comm.config().timeout().toNanos()) {
            String reported = health.failureOfNow(members);
            if (reported != null) {
                throw health.fail(this, reported, false);
            }
            throw health.fail(this, "no progress for " + comm.config().timeout().toMillis() + " ms: "
                    + health.diagnose(this), true);
        }
        idle.idle();
    }

    /** A neighbour went away: if it (or another member) reported why, that report is the better error. */
    private CollectiveException failLost(String reason) {
        String reported = health.failureOfNow(members);
        return reported != null ? health.fail(this, reported, false) : health.fail(this, reason, true);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Frames

    /**
     * Per collective, as a link of that bandwidth would behave: a frame may go once the time since the collective
     * started has paid for the bytes sent so far (plus one frame of slack).
     */
    private boolean throttleAllows(int frameBytes) {
        long now = System.nanoTime();
        if (throttleStartNs == 0) {
            throttleStartNs = now;
        }
        double paidBytes = (now - throttleStartNs) / 1e9 * throttleBytesPerS;
        return throttledBytes <= paidBytes;
    }

    /** Sends one frame of the caller's buffer (ring step 0). */
    private boolean offer(int step, long elementOffset, int count) {
        long result = claimFrame(step, elementOffset, count);
        if (result <= 0) {
            return checkNotSent(result);
        }
        int bytes = count * type.bytes();
        Reduce.copy(claimedPayload(), baseAddress + elementOffset * type.bytes(), bytes);
        commitFrame(bytes);
        return true;
    }

    /**
     * Claims the next frame on the outgoing link and writes its header: the new position (> 0), or Aeron's reason it
     * cannot go now (< 0), or 0 while throttled. The payload follows at {@link #claimedPayload}.
     */
    private long claimFrame(int step, long elementOffset, int count) {
        int payloadBytes = count * type.bytes();
        if (throttleBytesPerS > 0 && !throttleAllows(Frame.HEADER_LENGTH + payloadBytes)) {
            return 0;
        }
        long result = out.tryClaim(Frame.HEADER_LENGTH + payloadBytes);
        if (result > 0) {
            MutableDirectBuffer buffer = out.buffer();
            int at = out.offset();
            buffer.putInt(at + Frame.TYPE_OFFSET, Frame.TYPE_DATA);
            buffer.putInt(at + Frame.KIND_OFFSET, kind);
            buffer.putLong(at + Frame.SEQ_OFFSET, seq);
            buffer.putInt(at + Frame.NAME_HASH_OFFSET, nameHash);
            buffer.putInt(at + Frame.STEP_OFFSET, step);
            buffer.putLong(at + Frame.ELEMENT_OFFSET_OFFSET, elementOffset);
            buffer.putLong(at + Frame.TOTAL_OFFSET, totalElements);
            buffer.putInt(at + Frame.COUNT_OFFSET, count);
            buffer.putInt(at + Frame.MISC_OFFSET, misc);
        }
        return result;
    }

    private long claimedPayload() {
        return out.buffer().addressOffset() + out.offset() + Frame.HEADER_LENGTH;
    }

    private void commitFrame(int payloadBytes) {
        out.commit();
        bytesSent.addAndGet(Frame.HEADER_LENGTH + payloadBytes);
        throttledBytes += Frame.HEADER_LENGTH + payloadBytes;
        notConnectedSinceNs = 0;
        health.frameSent();
    }

    /** A claim that failed: false if the frame may go later (back pressure, throttle), else the failure. */
    private boolean checkNotSent(long result) {
        if (result == 0 || result == Publication.BACK_PRESSURED || result == Publication.ADMIN_ACTION) {
            return false;
        }
        if (result == Publication.NOT_CONNECTED) {
            long now = System.nanoTime();
            if (notConnectedSinceNs == 0) {
                notConnectedSinceNs = now;
            } else if (now - notConnectedSinceNs > NOT_CONNECTED_GRACE_NS) {
                throw failLost("rank " + nextRank + " (next in the ring) disconnected: it died or closed its process group");
            }
            return false;
        }
        if (result == Publication.CLOSED) {
            throw health.fail(this, "the link to rank " + nextRank + " is closed: this process group is closing", true);
        }
        if (result == Publication.MAX_POSITION_EXCEEDED) {
            throw health.fail(this, "the link to rank " + nextRank + " reached its maximum position"
                    + " (" + out.describe() + " too small for this job's traffic)", true);
        }
        throw health.fail(this, "unexpected Aeron offer result " + result, true);
    }

    /**
     * Consumes the next frame if it is there; it must be the one expected at (step, elementOffset, count). With
     * {@code forward}, only together with sending its content on at step + 1 (which may have to wait).
     */
    private boolean poll(int step, long elementOffset, int count, boolean reduce, boolean last, boolean forward) {
        receiver.expect(step, elementOffset, count, reduce, reduce && last && reduceOp == ReduceOp.AVG, reduce && !last, forward);
        int fragments = in.poll(receiver);
        if (receiver.error != null) {
            String error = receiver.error;
            receiver.error = null;
            throw health.fail(this, error, true);
        }
        if (receiver.notForwarded != 1) {
            long result = receiver.notForwarded;
            receiver.notForwarded = 1;
            return checkNotSent(result);
        }
        return fragments > 0 && receiver.received;
    }

    /**
     * Takes one frame out of the incoming link in one pass: a frame that goes on at the next step is reduced (or copied)
     * straight into the claim of that next frame, so the partial sums of intermediate steps never touch the caller's
     * buffer (it is overwritten by the final values later); the caller's buffer gets only final values and copies.
     */
    private final class FrameReceiver implements RingLinks.FrameHandler {
        private int step;
        private long elementOffset;
        private int count;
        private boolean reduce;
        private boolean average;
        private boolean partial;
        private boolean forward;
        boolean received;
        /** The claim result that kept a frame to forward in the incoming link (1 = none). */
        long notForwarded = 1;
        String error;

        void expect(int step, long elementOffset, int count, boolean reduce, boolean average, boolean partial, boolean forward) {
            this.step = step;
            this.elementOffset = elementOffset;
            this.count = count;
            this.reduce = reduce;
            this.average = average;
            this.partial = partial;
            this.forward = forward;
            this.received = false;
        }

        @Override
        public boolean onFrame(DirectBuffer buffer, int offset, int length) {
            if (length < Frame.HEADER_LENGTH || buffer.getInt(offset + Frame.TYPE_OFFSET) != Frame.TYPE_DATA) {
                error = "rank " + prevRank + " sent a malformed frame (" + (length < 0 ? "fragmented" : length + " bytes")
                        + "): it runs another dtrain version or another job reused this stream";
                return true;
            }
            int peerKind = buffer.getInt(offset + Frame.KIND_OFFSET);
            long peerSeq = buffer.getLong(offset + Frame.SEQ_OFFSET);
            int peerNameHash = buffer.getInt(offset + Frame.NAME_HASH_OFFSET);
            long peerTotal = buffer.getLong(offset + Frame.TOTAL_OFFSET);
            int peerMisc = buffer.getInt(offset + Frame.MISC_OFFSET);
            if (peerKind != kind || peerSeq != seq || peerNameHash != nameHash || peerTotal != totalElements || peerMisc != misc) {
                error = "mismatched collectives: rank " + prevRank + " (previous in the ring) is in " + Frame.kindName(peerKind)
                        + " #" + peerSeq + (peerNameHash != nameHash ? " with another name" : "")
                        + " (" + peerTotal + " elements, " + Frame.miscName(peerMisc) + ") while rank " + comm.rank()
                        + " is in " + Frame.kindName(kind) + " '" + opName + "' #" + seq + " (" + totalElements
                        + " elements, " + Frame.miscName(misc) + "); every rank must issue the same collectives"
                        + " in the same order with the same sizes";
                return true;
            }
            if (buffer.getInt(offset + Frame.STEP_OFFSET) != step
                    || buffer.getLong(offset + Frame.ELEMENT_OFFSET_OFFSET) != elementOffset
                    || buffer.getInt(offset + Frame.COUNT_OFFSET) != count
                    || length != Frame.HEADER_LENGTH + count * type.bytes()) {
                error = "rank " + prevRank + " sent step " + buffer.getInt(offset + Frame.STEP_OFFSET) + " elements ["
                        + buffer.getLong(offset + Frame.ELEMENT_OFFSET_OFFSET) + ", +" + buffer.getInt(offset + Frame.COUNT_OFFSET)
                        + ") where step " + step + " elements [" + elementOffset + ", +" + count + ") were expected"
                        + " (a different frame payload size, DTRAIN_FRAME_PAYLOAD_BYTES, or transport MTU on that rank?)";
                return true;
            }
            int bytes = count * type.bytes();
            // Bounds were checked above (length matches count) and by FlatBuffer (the buffer holds the range).
            long own = baseAddress + elementOffset * type.bytes();
            long src = buffer.addressOffset() + offset + Frame.HEADER_LENGTH;
            if (forward) {
                long result = claimFrame(step + 1, elementOffset, count);
                if (result <= 0) {
                    notForwarded = result;
                    return false; // stays in the incoming link until the next frame can go
                }
                long out = claimedPayload();
                if (partial) {
                    addTo(out, own, src);
                } else {
                    if (reduce) {
                        add(own, src);
                    } else {
                        Reduce.copy(own, src, bytes);
                    }
                    Reduce.copy(out, reduce ? own : src, bytes);
                }
                commitFrame(bytes);
            } else if (reduce) {
                add(own, src);
            } else {
                Reduce.copy(own, src, bytes);
            }
            received = true;
            return true;
        }

        private void add(long dst, long src) {
            if (type == ElementType.FLOAT32) {
                if (average) {
                    Reduce.addFloatsDivide(dst, src, count, size);
                } else {
                    Reduce.addFloats(dst, src, count);
                }
            } else if (average) {
                Reduce.addDoublesDivide(dst, src, count, size);
            } else {
                Reduce.addDoubles(dst, src, count);
            }
        }

        private void addTo(long out, long a, long b) {
            if (type == ElementType.FLOAT32) {
                Reduce.addFloatsTo(out, a, b, count);
            } else {
                Reduce.addDoublesTo(out, a, b, count);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------

    int kind() {
        return kind;
    }

    String opName() {
        return opName;
    }

    long seq() {
        return seq;
    }

    String describeOp() {
        return Frame.kindName(kind) + " '" + opName + "' #" + seq;
    }

    String describeGroup() {
        return groupKey + " " + Arrays.toString(members);
    }

    @Override
    public void close() {
        if (out != null) {
            out.close();
        }
        if (in != null) {
            in.close();
        }
    }

}
