package io.dtrain.parallel;

import io.aeron.Publication;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;
import org.agrona.concurrent.UnsafeBuffer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Point-to-point tensor messages between this rank and a few peers (pipeline stages: activations downstream,
 * gradients upstream), over one stream per direction of each link: a shared-memory ring within a host, Aeron udp
 * between hosts (Aeron ipc with {@code DTRAIN_TRANSPORT=ipc}); see {@link PeerStreams}.
 *
 * <p>Semantics are those of a buffered channel, which is what the pipeline schedules are proven deadlock-free
 * for: {@link #send} returns once the message is in the stream (it waits only under back pressure), and a receiver
 * thread drains every incoming stream into per-peer FIFO queues whether or not the caller is waiting, so two
 * neighbours sending to each other at the same time never block each other. Messages from one peer arrive in the
 * order sent. A tensor travels as pieces (a 72-byte header + at most {@link #PIECE_BYTES} of the tensor, one Aeron
 * message or shm record each) that the receiver writes straight into a freshly allocated array of the sender's shape and
 * type.
 *
 * <p>A peer that dies or stalls makes {@link #send} or {@link #await} fail within the group's timeout with a
 * {@link CollectiveException} naming the peer and what was awaited; the failure is published to the rendezvous
 * store so every other rank's collectives fail fast too.
 */
public final class PeerLinks implements AutoCloseable {
    static final int PIECE_BYTES = 1 << 20;
    static final String IPC_TERM_LENGTH = "16m";
    static final String UDP_TERM_LENGTH = "16m";
    private static final int HEADER_BYTES = 72;
    private static final int MAGIC = 0x44503250; // "DP2P"
    private static final int MAX_RANK = 4;
    private static final int STREAM_BASE = 0x40000000;

    /** A received tensor with the sender's tag. */
    public record Message(int tag, INDArray tensor) {
    }

    private final Communicator comm;
    private final String name;
    private final int[] peers;
    private final Map<Integer, PeerStreams.Out> publications = new HashMap<>();
    private final Map<Integer, PeerStreams.In> subscriptions = new HashMap<>();
    private final Map<Integer, ConcurrentLinkedQueue<Message>> inbox = new HashMap<>();
    private final Thread receiver;
    private final UnsafeBuffer header = new UnsafeBuffer(ByteBuffer.allocateDirect(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN));
    private final UnsafeBuffer payload = new UnsafeBuffer(0, 0);
    private final IdleStrategy sendIdle = newIdle();
    private final AtomicLong bytesSent = new AtomicLong();
    private final AtomicLong bytesReceived = new AtomicLong();
    private long nextMessageSeq;
    private volatile boolean running = true;
    private volatile RuntimeException receiverFailure;

    /** Opens a link to each peer; every peer must open its links to this rank at the same time (same name). */
    static PeerLinks open(Communicator comm, String name, int[] peers) {
        return new PeerLinks(comm, name, peers);
    }

    private PeerLinks(Communicator comm, String name, int[] peers) {
        this.comm = comm;
        this.name = name;
        this.peers = peers.clone();
        int me = comm.rank();
        for (int p : this.peers) {
            if (p == me || p < 0 || p >= comm.config().worldSize()) {
                throw new IllegalArgumentException("peer link " + name + ": rank " + me + " cannot link to rank " + p
                        + " (world of " + comm.config().worldSize() + ")");
            }
            inbox.put(p, new ConcurrentLinkedQueue<>());
        }
        try {
            connect();
        } catch (RuntimeException e) {
            closeStreams();
            throw e;
        }
        receiver = new Thread(this::receiveLoop, "dtrain-p2p-" + name);
        receiver.setDaemon(true);
        receiver.start();
    }

    private void connect() {
        WorldConfig config = comm.config();
        Duration wait = config.rendezvousTimeout();
        int me = comm.rank();
        for (int p : peers) {
            PeerStreams.Incoming incoming = PeerStreams.openIncoming(comm, name, p, sessionId(config, p, me), streamId(p, me),
                    IPC_TERM_LENGTH, UDP_TERM_LENGTH);
            subscriptions.put(p, incoming.in());
            comm.store().set(key(p, me), incoming.senderChannel());
        }
        for (int p : peers) {
            String channel = comm.store().getString(key(me, p), wait);
            publications.put(p, PeerStreams.openOutgoing(comm, channel, streamId(me, p)));
        }
        long deadline = System.nanoTime() + wait.toNanos();
        for (int p : peers) {
            while (!publications.get(p).isConnected() || !subscriptions.get(p).isConnected()) {
                if (System.nanoTime() > deadline) {
                    throw new CollectiveException("peer link " + name + " between ranks " + me + " and " + p
                            + " not connected after " + wait.toSeconds() + " s (sending: "
                            + publications.get(p).isConnected() + ", receiving: " + subscriptions.get(p).isConnected()
                            + "): did rank " + p + " open its link to rank " + me + "?");
                }
                Inbound.pause();
            }
        }
    }

    private String key(int from, int to) {
        return "p2p/" + name + "/" + from + ">" + to;
    }

    private int streamId(int from, int to) {
        return STREAM_BASE + (Math.floorMod(name.hashCode(), 64) << 20) + from * 1024 + to;
    }

    private int sessionId(WorldConfig config, int from, int to) {
        return (config.jobId() + "/p2p/" + name + "/" + from + ">" + to).hashCode();
    }

    /**
     * Sends a FLOAT or DOUBLE tensor (any shape of rank 1-4; non-contiguous arrays are copied first) with a
     * caller-chosen tag. Returns once every piece is in the stream; the caller may then reuse the array.
     */
    public void send(int peer, int tag, INDArray tensor) {
        PeerStreams.Out pub = publications.get(peer);
        if (pub == null) {
            throw new IllegalArgumentException("peer link " + name + " has no link to rank " + peer + "; peers are "
                    + Arrays.toString(peers));
        }
        if (tensor.dataType() != DataType.FLOAT && tensor.dataType() != DataType.DOUBLE) {
            throw new IllegalArgumentException("peer link " + name + " sends FLOAT or DOUBLE tensors, got " + tensor.dataType());
        }
        if (tensor.rank() < 1 || tensor.rank() > MAX_RANK) {
            throw new IllegalArgumentException("peer link " + name + " sends tensors of rank 1.." + MAX_RANK + ", got shape "
                    + Arrays.toString(tensor.shape()));
        }
        INDArray c = tensor.isView() || tensor.ordering() != 'c' ? tensor.dup('c') : tensor;
        int elementBytes = c.dataType() == DataType.FLOAT ? 4 : 8;
        long total = c.length() * elementBytes;
        long address = c.data().address() + c.offset() * elementBytes;
        long seq = nextMessageSeq++;
        header.putInt(0, MAGIC);
        header.putInt(4, tag);
        header.putLong(8, seq);
        header.putLong(16, total);
        header.putInt(32, elementBytes);
        header.putInt(36, c.rank());
        long[] shape = c.shape();
        for (int d = 0; d < MAX_RANK; d++) {
            header.putLong(40 + 8 * d, d < shape.length ? shape[d] : 0);
        }
        long offset = 0;
        do {
            int length = (int) Math.min(PIECE_BYTES, total - offset);
            header.putLong(24, offset);
            payload.wrap(address + offset, length);
            offerPiece(pub, peer, tag, address + offset, length);
            offset += length;
        } while (offset < total);
        java.lang.ref.Reference.reachabilityFence(c);
    }

    private void offerPiece(PeerStreams.Out pub, int peer, int tag, long payloadAddress, int length) {
        long start = System.nanoTime();
        sendIdle.reset();
        while (true) {
            long result = pub.offer(header, HEADER_BYTES, payloadAddress, payload, length);
            if (result > 0) {
                bytesSent.addAndGet(HEADER_BYTES + length);
                return;
            }
            if (result == Publication.CLOSED || result == Publication.MAX_POSITION_EXCEEDED) {
                throw fail("the stream to rank " + peer + " is " + (result == Publication.CLOSED ? "closed" : "at its"
                        + " maximum position"), "cannot send tag " + tag + " to rank " + peer, true);
            }
            // BACK_PRESSURED, ADMIN_ACTION and NOT_CONNECTED (a peer's receiver may lag behind at start) are retried
            // until the timeout; a dead peer is reported by the store long before that.
            checkPeer(peer, start, tag, null, result == Publication.NOT_CONNECTED ? "not connected" : "back pressure");
            sendIdle.idle();
        }
    }

    /** The oldest message from {@code peer} that has arrived, or null. Never blocks. */
    public Message poll(int peer) {
        RuntimeException failure = receiverFailure;
        if (failure != null) {
            throw failure;
        }
        ConcurrentLinkedQueue<Message> queue = inbox.get(peer);
        if (queue == null) {
            throw new IllegalArgumentException("peer link " + name + " has no link to rank " + peer);
        }
        return queue.poll();
    }

    /**
     * Waits for the next message from {@code peer}; fails after the group's timeout, or as soon as the store
     * reports the peer dead, naming it and {@code awaited} (e.g. "activation of micro-batch 3 from stage 0").
     */
    public Message await(int peer, String awaited) {
        Message m = poll(peer);
        if (m != null) {
            return m;
        }
        IdleStrategy idle = newIdle();
        long start = System.nanoTime();
        while ((m = poll(peer)) == null) {
            checkPeer(peer, start, 0, awaited, "nothing arrived");
            idle.idle();
        }
        return m;
    }

    public long bytesSent() {
        return bytesSent.get();
    }

    public long bytesReceived() {
        return bytesReceived.get();
    }

    /**
     * While this rank waits on {@code peer} (a send under back pressure when {@code awaited} is null, else a
     * receive): throws as soon as the store reports the peer failed, or once the wait that began at
     * {@code startNanos} outlasts the group's timeout. Cheap when healthy: a volatile read and a clock read.
     */
    private void checkPeer(int peer, long startNanos, int tag, String awaited, String stuck) {
        String failure = comm.health().failureOf(peer);
        boolean late = System.nanoTime() - startNanos > comm.config().timeout().toNanos();
        if (failure == null && !late) {
            return;
        }
        String doing = awaited == null ? "sending tag " + tag + " to rank " + peer
                : "waiting for " + awaited + " (rank " + peer + ")";
        if (failure != null) {
            throw fail(failure, doing, false);
        }
        throw fail(comm.health().describeRank(peer), doing + " made no progress for "
                + comm.config().timeout().toSeconds() + " s (" + stuck + ", DTRAIN_COLLECTIVE_TIMEOUT)", true);
    }

    /** The failure naming the rank at fault first ({@code culprit}), then what this rank's link was doing. */
    private CollectiveException fail(String culprit, String doing, boolean firstHand) {
        return comm.health().fail(culprit + "; peer link " + name + " on rank " + comm.rank() + ": " + doing, firstHand);
    }

    // ------------------------------------------------------------------ receiver thread

    private void receiveLoop() {
        Map<Integer, PeerStreams.PieceHandler> assemblers = new HashMap<>();
        for (int p : peers) {
            assemblers.put(p, new Assembly(p)::onPiece);
        }
        IdleStrategy idle = newIdle();
        try {
            while (running) {
                int work = 0;
                for (int p : peers) {
                    work += subscriptions.get(p).poll(assemblers.get(p), 16);
                }
                idle.idle(work);
            }
        } catch (RuntimeException e) {
            receiverFailure = e instanceof CollectiveException ce ? ce : new CollectiveException("peer link " + name
                    + " on rank " + comm.rank() + ": receiving failed: " + e, e);
        }
    }

    /** Reassembles one peer's pieces into tensors (receiver thread only). */
    private final class Assembly {
        private final int peer;
        private final UnsafeBuffer target = new UnsafeBuffer(0, 0);
        private INDArray current;
        private long currentSeq = -1;
        private long expectedOffset;
        private long total;
        private int tag;

        Assembly(int peer) {
            this.peer = peer;
        }

        void onPiece(DirectBuffer buffer, int offset, int length) {
            if (length < HEADER_BYTES || buffer.getInt(offset, ByteOrder.LITTLE_ENDIAN) != MAGIC) {
                throw new CollectiveException("peer link " + name + ": malformed message of " + length + " bytes from rank " + peer);
            }
            long seq = buffer.getLong(offset + 8, ByteOrder.LITTLE_ENDIAN);
            long pieceOffset = buffer.getLong(offset + 24, ByteOrder.LITTLE_ENDIAN);
            if (pieceOffset == 0) {
                begin(buffer, offset, seq);
            } else if (seq != currentSeq || pieceOffset != expectedOffset) {
                throw new CollectiveException("peer link " + name + ": piece at byte " + pieceOffset + " of message " + seq
                        + " from rank " + peer + " arrived, expected byte " + expectedOffset + " of message " + currentSeq);
            }
            int piece = length - HEADER_BYTES;
            target.putBytes((int) pieceOffset, buffer, offset + HEADER_BYTES, piece);
            expectedOffset += piece;
            bytesReceived.addAndGet(length);
            if (expectedOffset == total) {
                inbox.get(peer).add(new Message(tag, current));
                current = null;
                target.wrap(0, 0);
            }
        }

        private void begin(DirectBuffer buffer, int offset, long seq) {
            if (current != null) {
                throw new CollectiveException("peer link " + name + ": message " + seq + " from rank " + peer
                        + " began before message " + currentSeq + " was complete");
            }
            tag = buffer.getInt(offset + 4, ByteOrder.LITTLE_ENDIAN);
            total = buffer.getLong(offset + 16, ByteOrder.LITTLE_ENDIAN);
            int elementBytes = buffer.getInt(offset + 32, ByteOrder.LITTLE_ENDIAN);
            int rank = buffer.getInt(offset + 36, ByteOrder.LITTLE_ENDIAN);
            long[] shape = new long[rank];
            for (int d = 0; d < rank; d++) {
                shape[d] = buffer.getLong(offset + 40 + 8 * d, ByteOrder.LITTLE_ENDIAN);
            }
            current = Nd4j.create(elementBytes == 4 ? DataType.FLOAT : DataType.DOUBLE, shape, 'c');
            if (current.length() * elementBytes != total || total > Integer.MAX_VALUE) {
                throw new CollectiveException("peer link " + name + ": message " + seq + " from rank " + peer + " has "
                        + total + " bytes for shape " + Arrays.toString(shape) + " (over 2 GiB or inconsistent)");
            }
            target.wrap(current.data().address(), (int) total);
            currentSeq = seq;
            expectedOffset = 0;
        }
    }

    // ------------------------------------------------------------------ lifecycle

    @Override
    public void close() {
        running = false;
        if (receiver != null) {
            try {
                receiver.join(2_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        closeStreams();
    }

    private void closeStreams() {
        publications.values().forEach(PeerLinks::closeQuietly);
        subscriptions.values().forEach(PeerLinks::closeQuietly);
    }

    private static void closeQuietly(AutoCloseable c) {
        try {
            c.close();
        } catch (Exception e) {
            // closing during shutdown: nothing to do
        }
    }

    private static IdleStrategy newIdle() {
        // Backoff, not busy-spin: on few cores a spinning receiver steals the CPU the stage's compute needs.
        return new BackoffIdleStrategy(20, 50, TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MICROSECONDS.toNanos(200));
    }
}
