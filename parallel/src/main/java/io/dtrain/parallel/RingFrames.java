package io.dtrain.parallel;

import io.aeron.Publication;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;

/**
 * The frame level of a {@link Ring}: its two links, and one frame at a time on them. Kept apart from the ring's
 * schedule so that {@link Ring} reads as which segment goes where at which step, while the details every frame needs
 * live here once: the header naming the running collective, claiming and committing on the outgoing link (with the
 * throttle and every Aeron offer result), and the receive that checks a frame against the one expected and reduces or
 * copies it straight into the claim that forwards it. Runs on the communication thread only, allocation-free per
 * frame; {@link Ring} calls it directly (a final class), so the JIT inlines these calls into the ring's loop.
 */
final class RingFrames implements AutoCloseable {
    private static final long NOT_CONNECTED_GRACE_NS = TimeUnit.SECONDS.toNanos(1);

    private final Ring ring;
    private final HealthMonitor health;
    private final int rank;
    private final int size;
    private final int prevRank;
    private final int nextRank;
    private final RingLinks.Outbound out;
    private final RingLinks.InboundFrames in;
    /** The group's frame payload: the smallest of its members', so that all cut buffers into the same frames. */
    final int maxPayloadBytes;
    final AtomicLong bytesSent = new AtomicLong();
    private final FrameReceiver receiver = new FrameReceiver();
    /**
     * Benchmark/diagnosis option (DTRAIN_TRANSPORT_THROTTLE): bytes/s this process may send per collective on this
     * ring (0 = off), to make communication comparable to compute on a fast local transport. A throttled frame is
     * retried like a back-pressured one, so timeouts and failure handling stay the same.
     */
    private final long throttleBytesPerS;
    private long throttleStartNs;
    private long throttledBytes;
    private long notConnectedSinceNs;

    // The running collective, as every frame's header names it.
    private int kind;
    private String opName;
    private int nameHash;
    private long seq;
    private long totalElements;
    private ElementType type;
    private ReduceOp reduceOp;
    private int misc;
    private long baseAddress;

    /**
     * Opens the links of {@code ring} (to its next member, from its previous one; none in a group of one), agrees on
     * the group's frame payload and waits until both links are connected (rendezvous timeout).
     */
    RingFrames(Ring ring, int streamBase) {
        Communicator comm = ring.comm;
        WorldConfig config = comm.config();
        this.ring = ring;
        this.health = comm.health();
        this.rank = comm.rank();
        this.size = ring.size;
        this.prevRank = ring.prevRank;
        this.nextRank = ring.nextRank;
        this.throttleBytesPerS = config.throttleBytesPerSecond();
        if (size == 1) {
            out = null;
            in = null;
            maxPayloadBytes = config.maxFramePayloadBytes();
            return;
        }
        String groupKey = ring.groupKey;
        int index = ring.index;
        Duration wait = config.rendezvousTimeout();
        RingLinks.Incoming incoming = RingLinks.openIncoming(comm, groupKey, prevRank, streamBase + index);
        in = incoming.frames();
        comm.store().set("ring/" + groupKey + "/" + rank, incoming.senderChannel());
        String channel = comm.store().getString("ring/" + groupKey + "/" + nextRank, wait);
        out = RingLinks.openOutgoing(comm, channel, streamBase + Math.floorMod(index + 1, size));
        // Every member must cut buffers into the same frames, so the group uses its smallest frame (MTUs differ
        // between ipc and udp links).
        comm.store().set("payload/" + groupKey + "/" + rank,
                Integer.toString(Math.min(config.maxFramePayloadBytes(), out.maxFrameLength() - Frame.HEADER_LENGTH)));
        int smallest = Integer.MAX_VALUE;
        for (int member : ring.members) {
            smallest = Math.min(smallest, Integer.parseInt(comm.store().getString("payload/" + groupKey + "/" + member, wait)));
        }
        maxPayloadBytes = smallest;
        long deadline = System.nanoTime() + wait.toNanos();
        while (!out.isConnected() || !in.isConnected()) {
            if (System.nanoTime() > deadline) {
                throw new CollectiveException("group " + groupKey + " on rank " + rank + ": ring not connected after "
                        + wait.toSeconds() + " s (to rank " + nextRank + ": " + out.isConnected() + ", from rank "
                        + prevRank + ": " + in.isConnected() + ") over " + channel);
            }
            Inbound.pause();
        }
        // Logged under Ring: it is the ring's set-up.
        org.slf4j.LoggerFactory.getLogger(Ring.class).info("group {} rank {}: receiving from rank {} over {}, sending to rank {} over {}, {} B frames",
                groupKey, rank, prevRank, in.describe(), nextRank, out.describe(), maxPayloadBytes);
    }

    /** The collective every following frame belongs to (its header), and whose buffer frames are read from and into. */
    void begin(int kind, String name, long sequence, FlatBuffer buffer, ReduceOp op) {
        this.kind = kind;
        this.opName = name;
        this.nameHash = name.hashCode();
        this.seq = sequence;
        this.totalElements = buffer.elements();
        this.type = buffer.type();
        this.reduceOp = op;
        this.misc = Frame.misc(buffer.type(), op);
        this.baseAddress = buffer.address();
        this.notConnectedSinceNs = 0;
    }

    /** The throttle counts per ring pass: it starts paying again with the next frame. */
    void restartThrottle() {
        throttleStartNs = 0;
        throttledBytes = 0;
    }

    int kind() {
        return kind;
    }

    String opName() {
        return opName;
    }

    long seq() {
        return seq;
    }

    /** A member that entered the shared-memory exchange for this sequence number must be in this very collective. */
    void checkNoExchangePeerDiffers(ShmExchange exchange) {
        exchange.checkNoPeerDiffers(kind, nameHash, seq, totalElements, misc);
    }

    /** Whether the link from the previous member was closed by its sender (it died or closed its process group). */
    boolean incomingClosed() {
        return in != null && in.isClosed();
    }

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
    boolean offer(int step, long elementOffset, int count) {
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
                throw ring.failLost("rank " + nextRank + " (next in the ring) disconnected: it died or closed its process group");
            }
            return false;
        }
        if (result == Publication.CLOSED) {
            throw health.fail(ring, "the link to rank " + nextRank + " is closed: this process group is closing", true);
        }
        if (result == Publication.MAX_POSITION_EXCEEDED) {
            throw health.fail(ring, "the link to rank " + nextRank + " reached its maximum position"
                    + " (" + out.describe() + " too small for this job's traffic)", true);
        }
        throw health.fail(ring, "unexpected Aeron offer result " + result, true);
    }

    /**
     * Consumes the next frame if it is there; it must be the one expected at (step, elementOffset, count). With
     * {@code forward}, only together with sending its content on at step + 1 (which may have to wait).
     */
    boolean poll(int step, long elementOffset, int count, boolean reduce, boolean last, boolean forward) {
        receiver.expect(step, elementOffset, count, reduce, reduce && last && reduceOp == ReduceOp.AVG, reduce && !last, forward);
        int fragments = in.poll(receiver);
        if (receiver.error != null) {
            String error = receiver.error;
            receiver.error = null;
            throw health.fail(ring, error, true);
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
                        + " (" + peerTotal + " elements, " + Frame.miscName(peerMisc) + ") while rank " + rank
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
