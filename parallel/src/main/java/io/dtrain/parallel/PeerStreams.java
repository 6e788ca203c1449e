package io.dtrain.parallel;

import io.aeron.ExclusivePublication;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import io.aeron.logbuffer.FragmentHandler;
import java.nio.file.Path;
import org.agrona.DirectBuffer;
import org.agrona.UnsafeApi;

/**
 * The two ends of one direction of a {@link PeerLinks} link: a {@link ShmLink} ring when the peer shares this host's
 * memory (as ring links do; no media driver on the data path, nothing zeroed, the receiver reads the sender's
 * position itself), else an Aeron stream (udp between hosts, ipc with {@code DTRAIN_TRANSPORT=ipc}). A message piece
 * is one record of the shm ring (so the ring holds at least two of the largest) or one Aeron message (fragmented and
 * reassembled by Aeron).
 */
final class PeerStreams {
    /** A p2p shm ring: room for several 1 MiB pieces in flight, like the 16 MiB Aeron term's window. */
    static final int SHM_CAPACITY = 8 << 20;
    private static final String SHM_SCHEME = "shm:";

    private PeerStreams() {
    }

    /** Receives pieces: whole ones, to {@code handler(buffer, offset, length)}. */
    interface In extends AutoCloseable {
        int poll(PieceHandler handler, int limit);

        boolean isConnected();

        @Override
        void close();
    }

    /** Sends pieces: a header and a payload as one message. */
    interface Out extends AutoCloseable {
        /** > 0 sent; else a {@link Publication} status (back pressure, not connected, closed ...). */
        long offer(DirectBuffer header, int headerLength, long payloadAddress, DirectBuffer payload, int payloadLength);

        boolean isConnected();

        @Override
        void close();
    }

    interface PieceHandler {
        void onPiece(DirectBuffer buffer, int offset, int length);
    }

    /** The receiving end from {@code from} (this rank) and the channel its sender opens (passed through the store). */
    record Incoming(In in, String senderChannel) {
    }

    static Incoming openIncoming(Communicator comm, String linkName, int from, int sessionId, int streamId,
                                 String ipcTermLength, String udpTermLength) {
        if (comm.sharesMemoryWith(from)) {
            ShmSpace.require(comm.config().shmDirectory(), 1, ShmLink.HEADER_BYTES + (long) SHM_CAPACITY,
                    "the pipeline link " + linkName);
            String file = "p2p-" + linkName.replaceAll("[^A-Za-z0-9._-]", "_") + "-" + from + "-to-" + comm.rank();
            ShmLink.Consumer consumer = new ShmLink.Consumer(comm.config().shmDirectory().resolve(file), SHM_CAPACITY);
            return new Incoming(shm(consumer), SHM_SCHEME + consumer.file());
        }
        Inbound inbound = Inbound.open(comm, from, sessionId, streamId, ipcTermLength, udpTermLength);
        return new Incoming(aeron(inbound.subscription()), inbound.senderChannel());
    }

    static Out openOutgoing(Communicator comm, String senderChannel, int streamId) {
        return senderChannel.startsWith(SHM_SCHEME)
                ? shm(new ShmLink.Producer(Path.of(senderChannel.substring(SHM_SCHEME.length()))))
                : aeron(comm.aeron().addExclusivePublication(senderChannel, streamId));
    }

    private static In shm(ShmLink.Consumer consumer) {
        return new In() {
            private PieceHandler handler;
            private final RingLinks.FrameHandler adapter = (buffer, offset, length) -> {
                handler.onPiece(buffer, offset, length);
                return true;
            };

            public int poll(PieceHandler pieceHandler, int limit) {
                handler = pieceHandler;
                int pieces = 0;
                while (pieces < limit && consumer.poll(adapter) > 0) {
                    pieces++;
                }
                return pieces;
            }

            public boolean isConnected() {
                return consumer.isConnected();
            }

            public void close() {
                consumer.close();
            }
        };
    }

    private static Out shm(ShmLink.Producer producer) {
        return new Out() {
            public long offer(DirectBuffer header, int headerLength, long payloadAddress, DirectBuffer payload, int payloadLength) {
                long result = producer.tryClaim(headerLength + payloadLength);
                if (result > 0) {
                    producer.buffer().putBytes(producer.offset(), header, 0, headerLength);
                    UnsafeApi.copyMemory(payloadAddress, producer.buffer().addressOffset() + producer.offset() + headerLength,
                            payloadLength);
                    producer.commit();
                }
                return result;
            }

            public boolean isConnected() {
                return producer.isConnected();
            }

            public void close() {
                producer.close();
            }
        };
    }

    private static In aeron(Subscription subscription) {
        return new In() {
            private PieceHandler handler;
            private final FragmentHandler assembler = new FragmentAssembler(
                    (buffer, offset, length, header) -> handler.onPiece(buffer, offset, length));

            public int poll(PieceHandler pieceHandler, int limit) {
                handler = pieceHandler;
                return subscription.poll(assembler, limit);
            }

            public boolean isConnected() {
                return subscription.imageCount() > 0;
            }

            public void close() {
                subscription.close();
            }
        };
    }

    private static Out aeron(ExclusivePublication publication) {
        return new Out() {
            public long offer(DirectBuffer header, int headerLength, long payloadAddress, DirectBuffer payload, int payloadLength) {
                return publication.offer(header, 0, headerLength, payload, 0, payloadLength, null);
            }

            public boolean isConnected() {
                return publication.isConnected();
            }

            public void close() {
                publication.close();
            }
        };
    }
}
