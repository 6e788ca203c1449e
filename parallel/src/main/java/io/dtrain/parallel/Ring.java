package io.dtrain.parallel;

import io.aeron.Aeron;
import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.aeron.Publication;
import io.aeron.Subscription;
import io.aeron.logbuffer.BufferClaim;
import io.aeron.logbuffer.ControlledFragmentHandler;
import io.aeron.logbuffer.FrameDescriptor;
import io.aeron.logbuffer.Header;
import java.net.InetAddress;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * The ring of one process group: a publication to the next member and a subscription from the previous one, and
 * the collectives on top. Runs on the communication thread only (one op at a time), allocation-free per frame.
 *
 * <p>All collectives are pipelined ring passes over frames: the frame a member sends at ring step g is the one it
 * received (and reduced) at step g-1, so sending, receiving and adding overlap at frame granularity. A segment is
 * reduced along the ring in a fixed order, its final value (divided by the group size for AVG) is computed once by
 * its owner and then only copied around, so every member gets the same bits on every run.
 */
final class Ring implements AutoCloseable {
    // Small on purpose: the three terms of an ipc publication (12 MiB) stay in the last-level cache, so writing a frame
    // does not first read a cold line from memory and the receiver reduces out of cache. A 32 MiB term doubled the
    // copy and add time per frame on the 2-core test machine. The price: an ipc publication may run at most
    // term/2 = 2 MiB ahead of its subscriber, and only the driver's conductor moves that limit (see DriverMain).
    static final String IPC_TERM_LENGTH = "4m";
    static final String UDP_TERM_LENGTH = "8m";
    static final int LOOPBACK_MTU = 65504;
    static final int NETWORK_MTU = 8192;
    private static final long NOT_CONNECTED_GRACE_NS = TimeUnit.SECONDS.toNanos(1);
    /**
     * Benchmark/diagnosis option: cap what this process sends per ring at DTRAIN_TRANSPORT_THROTTLE bytes/s (0 =
     * off), to make communication comparable to compute on a fast local transport. A throttled frame is retried
     * like a back-pressured one, so timeouts and failure handling stay the same.
     */
    static final long THROTTLE_BYTES_PER_S = parseThrottle(System.getenv("DTRAIN_TRANSPORT_THROTTLE"));

    static long parseThrottle(String value) {
        if (value == null || value.isBlank()) {
            return 0;
        }
        try {
            long v = Long.parseLong(value.strip());
            if (v < 0) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("DTRAIN_TRANSPORT_THROTTLE must be a byte rate per second >= 0 (0 = off), got '"
                    + value + "'");
        }
    }

    private long throttleStartNs;
    private long throttledBytes;

    final Communicator comm;
    final String groupKey;
    final int[] members;
    final int index;
    final int size;
    final int prevRank;
    final int nextRank;
    private final ExclusivePublication publication;
    private final Subscription subscription;
    private Image image;
    private final int maxPayloadBytes;
    private final BufferClaim claim = new BufferClaim();
    private final UnsafeBuffer local = new UnsafeBuffer(0, 0);
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
    private int steps;
    private int reduceSteps;
    private int shift;
    private long lastProgressNs;
    private long notConnectedSinceNs;

    Ring(Communicator comm, String groupKey, int[] members, int streamBase) {
        this.comm = comm;
        this.groupKey = groupKey;
        this.members = members.clone();
        this.size = members.length;
        this.index = indexOf(members, comm.rank());
        this.prevRank = members[Math.floorMod(index - 1, size)];
        this.nextRank = members[Math.floorMod(index + 1, size)];
        this.segmentStart = new long[size + 1];
        if (size == 1) {
            publication = null;
            subscription = null;
            maxPayloadBytes = comm.config().chunkBytes();
            return;
        }
        ParallelConfig config = comm.config();
        Aeron aeron = comm.aeron();
        boolean ipc = config.transport() != ParallelConfig.Transport.UDP
                && comm.nodeId(prevRank).equals(comm.nodeId(comm.rank()));
        Duration wait = config.rendezvousTimeout();
        // The session id ties a stream to this job and group: a shared or external driver may still hold a dead
        // job's publication on the same stream id, and a session-specific subscription never sees it.
        int sessionId = (config.jobId() + "/" + groupKey).hashCode();
        String senderChannel;
        if (ipc) {
            subscription = aeron.addSubscription("aeron:ipc?session-id=" + sessionId, streamBase + index);
            senderChannel = "aeron:ipc?term-length=" + IPC_TERM_LENGTH + "|mtu=" + LOOPBACK_MTU + "|session-id=" + sessionId;
        } else {
            InetAddress address = comm.advertiseAddress();
            int mtu = address.isLoopbackAddress() ? LOOPBACK_MTU : NETWORK_MTU;
            subscription = aeron.addSubscription("aeron:udp?endpoint=" + address.getHostAddress()
                    + ":0|so-rcvbuf=4m|rcv-wnd=4m|session-id=" + sessionId, streamBase + index);
            String endpoint = awaitResolvedEndpoint(subscription, wait);
            senderChannel = "aeron:udp?endpoint=" + endpoint + "|mtu=" + mtu + "|term-length=" + UDP_TERM_LENGTH
                    + "|so-sndbuf=4m|session-id=" + sessionId;
        }
        comm.store().set("ring/" + groupKey + "/" + comm.rank(), senderChannel);
        String channel = comm.store().getString("ring/" + groupKey + "/" + nextRank, wait);
        publication = aeron.addExclusivePublication(channel, streamBase + Math.floorMod(index + 1, size));
        // Every member must cut buffers into the same frames, so the group uses its smallest frame (MTUs differ
        // between ipc and udp links).
        comm.store().set("payload/" + groupKey + "/" + comm.rank(),
                Integer.toString(Math.min(config.chunkBytes(), publication.maxPayloadLength() - Frame.HEADER_LENGTH)));
        int smallest = Integer.MAX_VALUE;
        for (int member : members) {
            smallest = Math.min(smallest, Integer.parseInt(comm.store().getString("payload/" + groupKey + "/" + member, wait)));
        }
        maxPayloadBytes = smallest;
        long deadline = System.nanoTime() + wait.toNanos();
        while (!publication.isConnected() || subscription.imageCount() == 0) {
            if (System.nanoTime() > deadline) {
                throw new CollectiveException("group " + groupKey + " on rank " + comm.rank() + ": ring not connected after "
                        + wait.toSeconds() + " s (to rank " + nextRank + ": " + publication.isConnected() + ", from rank "
                        + prevRank + ": " + (subscription.imageCount() > 0) + ") over " + channel);
            }
            sleep(1);
        }
        image = subscription.imageAtIndex(0);
        org.slf4j.LoggerFactory.getLogger(Ring.class).info("group {} rank {}: receiving from rank {} over {}, sending to rank {} over {}, {} B frames",
                groupKey, comm.rank(), prevRank, subscription.channel(), nextRank, channel, maxPayloadBytes);
    }

    private static String awaitResolvedEndpoint(Subscription subscription, Duration wait) {
        long deadline = System.nanoTime() + wait.toNanos();
        String endpoint;
        while ((endpoint = subscription.resolvedEndpoint()) == null) {
            if (System.nanoTime() > deadline) {
                throw new CollectiveException("Aeron did not bind UDP subscription " + subscription.channel());
            }
            sleep(1);
        }
        return endpoint;
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
                if (poll(0, offset, (int) Math.min(frameElements, totalElements - offset), false, false)) {
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

    private int framesIn(int segment) {
        long length = segmentStart[segment + 1] - segmentStart[segment];
        return (int) ((length + frameElements - 1) / frameElements);
    }

    /**
     * Ring steps 0..steps-1: at step g send segment (index - g + shift) and receive segment (index - g - 1 + shift),
     * reducing for g < reduceSteps (dividing by size at the last reduce step for AVG), copying after. A frame is sent
     * once it was received at the previous step; a frame is received only after this member sent the frame at the
     * same position, so a copy never overwrites data that still has to go out.
     */
    private void runRing(int steps, int reduceSteps, int shift) {
        throttleStartNs = 0;
        throttledBytes = 0;
        this.steps = steps;
        this.reduceSteps = reduceSteps;
        this.shift = shift;
        int sendStep = 0;
        int sendFrame = 0;
        int recvStep = 0;
        int recvFrame = 0;
        while (sendStep < steps && sendFrame >= framesIn(sendSegment(sendStep))) {
            sendStep++;
        }
        while (recvStep < steps && recvFrame >= framesIn(recvSegment(recvStep))) {
            recvStep++;
        }
        lastProgressNs = System.nanoTime();
        while (sendStep < steps || recvStep < steps) {
            int work = 0;
            if (sendStep < steps
                    && (sendStep == 0 || recvStep > sendStep - 1 || (recvStep == sendStep - 1 && recvFrame > sendFrame))) {
                int segment = sendSegment(sendStep);
                long offset = segmentStart[segment] + (long) sendFrame * frameElements;
                int count = (int) Math.min(frameElements, segmentStart[segment + 1] - offset);
                if (offer(sendStep, offset, count)) {
                    work++;
                    sendFrame++;
                    while (sendStep < steps && sendFrame >= framesIn(sendSegment(sendStep))) {
                        sendStep++;
                        sendFrame = 0;
                    }
                }
            }
            if (recvStep < steps && (sendStep > recvStep || (sendStep == recvStep && sendFrame > recvFrame))) {
                int segment = recvSegment(recvStep);
                long offset = segmentStart[segment] + (long) recvFrame * frameElements;
                int count = (int) Math.min(frameElements, segmentStart[segment + 1] - offset);
                boolean reduce = recvStep < reduceSteps;
                boolean average = reduceOp == ReduceOp.AVG && recvStep == reduceSteps - 1;
                if (poll(recvStep, offset, count, reduce, average)) {
                    work++;
                    recvFrame++;
                    while (recvStep < steps && recvFrame >= framesIn(recvSegment(recvStep))) {
                        recvStep++;
                        recvFrame = 0;
                    }
                }
            }
            progress(work);
        }
    }

    private void progress(int work) {
        if (work > 0) {
            lastProgressNs = System.nanoTime();
            idle.reset();
            return;
        }
        String failed = comm.failureOf(members);
        if (failed != null) {
            throw comm.fail(this, failed, false);
        }
        if (image != null && image.isClosed()) {
            throw failLost("rank " + prevRank + " (previous in the ring) is gone: its Aeron stream closed"
                    + " (the process died or closed its process group)");
        }
        if (System.nanoTime() - lastProgressNs > comm.config().timeout().toNanos()) {
            String reported = comm.failureOfNow(members);
            if (reported != null) {
                throw comm.fail(this, reported, false);
            }
            throw comm.fail(this, "no progress for " + comm.config().timeout().toMillis() + " ms: "
                    + comm.diagnose(this), true);
        }
        idle.idle();
    }

    /** A neighbour went away: if it (or another member) reported why, that report is the better error. */
    private CollectiveException failLost(String reason) {
        String reported = comm.failureOfNow(members);
        return reported != null ? comm.fail(this, reported, false) : comm.fail(this, reason, true);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Frames

    /**
     * Per collective, as a link of that bandwidth would behave: a frame may go once the time since the collective
     * started has paid for the bytes sent so far (plus one frame of burst).
     */
    private boolean throttleAllows(int frameBytes) {
        long now = System.nanoTime();
        if (throttleStartNs == 0) {
            throttleStartNs = now;
        }
        double paidBytes = (now - throttleStartNs) / 1e9 * THROTTLE_BYTES_PER_S;
        return throttledBytes <= paidBytes;
    }

    private boolean offer(int step, long elementOffset, int count) {
        int payloadBytes = count * type.bytes();
        if (THROTTLE_BYTES_PER_S > 0 && !throttleAllows(Frame.HEADER_LENGTH + payloadBytes)) {
            return false;
        }
        long result = publication.tryClaim(Frame.HEADER_LENGTH + payloadBytes, claim);
        if (result > 0) {
            MutableDirectBuffer buffer = claim.buffer();
            int at = claim.offset();
            buffer.putInt(at + Frame.TYPE_OFFSET, Frame.TYPE_DATA);
            buffer.putInt(at + Frame.KIND_OFFSET, kind);
            buffer.putLong(at + Frame.SEQ_OFFSET, seq);
            buffer.putInt(at + Frame.NAME_HASH_OFFSET, nameHash);
            buffer.putInt(at + Frame.STEP_OFFSET, step);
            buffer.putLong(at + Frame.ELEMENT_OFFSET_OFFSET, elementOffset);
            buffer.putLong(at + Frame.TOTAL_OFFSET, totalElements);
            buffer.putInt(at + Frame.COUNT_OFFSET, count);
            buffer.putInt(at + Frame.MISC_OFFSET, misc);
            local.wrap(baseAddress + elementOffset * type.bytes(), payloadBytes);
            buffer.putBytes(at + Frame.HEADER_LENGTH, local, 0, payloadBytes);
            claim.commit();
            bytesSent.addAndGet(Frame.HEADER_LENGTH + payloadBytes);
            throttledBytes += Frame.HEADER_LENGTH + payloadBytes;
            notConnectedSinceNs = 0;
            comm.frameSent();
            return true;
        }
        if (result == Publication.BACK_PRESSURED || result == Publication.ADMIN_ACTION) {
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
            throw comm.fail(this, "the publication to rank " + nextRank + " is closed: this process group is closing", true);
        }
        if (result == Publication.MAX_POSITION_EXCEEDED) {
            throw comm.fail(this, "the publication to rank " + nextRank + " reached its maximum position"
                    + " (term length " + publication.termBufferLength() + " too small for this job's traffic)", true);
        }
        throw comm.fail(this, "unexpected Aeron offer result " + result, true);
    }

    /** Consumes the next frame if it is there; it must be the one expected at (step, elementOffset, count). */
    private boolean poll(int step, long elementOffset, int count, boolean reduce, boolean average) {
        receiver.expect(step, elementOffset, count, reduce, average);
        int fragments = image.controlledPoll(receiver, 1);
        if (receiver.error != null) {
            String error = receiver.error;
            receiver.error = null;
            throw comm.fail(this, error, true);
        }
        return fragments > 0 && receiver.received;
    }

    private final class FrameReceiver implements ControlledFragmentHandler {
        private int step;
        private long elementOffset;
        private int count;
        private boolean reduce;
        private boolean average;
        boolean received;
        String error;

        void expect(int step, long elementOffset, int count, boolean reduce, boolean average) {
            this.step = step;
            this.elementOffset = elementOffset;
            this.count = count;
            this.reduce = reduce;
            this.average = average;
            this.received = false;
        }

        @Override
        public Action onFragment(DirectBuffer buffer, int offset, int length, Header header) {
            if ((header.flags() & FrameDescriptor.UNFRAGMENTED) != FrameDescriptor.UNFRAGMENTED
                    || length < Frame.HEADER_LENGTH || buffer.getInt(offset + Frame.TYPE_OFFSET) != Frame.TYPE_DATA) {
                error = "rank " + prevRank + " sent a malformed frame (" + length + " bytes, flags " + header.flags()
                        + "): it runs another dtrain version or another job reused this stream";
                return Action.CONTINUE;
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
                return Action.CONTINUE;
            }
            if (buffer.getInt(offset + Frame.STEP_OFFSET) != step
                    || buffer.getLong(offset + Frame.ELEMENT_OFFSET_OFFSET) != elementOffset
                    || buffer.getInt(offset + Frame.COUNT_OFFSET) != count
                    || length != Frame.HEADER_LENGTH + count * type.bytes()) {
                error = "rank " + prevRank + " sent step " + buffer.getInt(offset + Frame.STEP_OFFSET) + " elements ["
                        + buffer.getLong(offset + Frame.ELEMENT_OFFSET_OFFSET) + ", +" + buffer.getInt(offset + Frame.COUNT_OFFSET)
                        + ") where step " + step + " elements [" + elementOffset + ", +" + count + ") were expected"
                        + " (a different chunk size, DTRAIN_CHUNK_BYTES, or transport MTU on that rank?)";
                return Action.CONTINUE;
            }
            int payload = offset + Frame.HEADER_LENGTH;
            if (!reduce) {
                local.wrap(baseAddress + elementOffset * type.bytes(), count * type.bytes());
                local.putBytes(0, buffer, payload, count * type.bytes());
            } else {
                // Bounds were checked above (length matches count) and by FlatBuffer (the buffer holds the range).
                long dst = baseAddress + elementOffset * type.bytes();
                long src = buffer.addressOffset() + payload;
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
            received = true;
            return Action.CONTINUE;
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
        if (publication != null) {
            publication.close();
        }
        if (subscription != null) {
            subscription.close();
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CollectiveException("interrupted while connecting the ring", e);
        }
    }
}
