package io.dtrain.parallel;

import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.aeron.Subscription;
import io.aeron.logbuffer.BufferClaim;
import io.aeron.logbuffer.ControlledFragmentHandler;
import io.aeron.logbuffer.FrameDescriptor;
import java.nio.file.Path;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;

/**
 * The two ends of one ring link, over Aeron (an exclusive publication and a subscription's image, adapted here) or
 * over a {@link ShmLink} (whose ends implement these): the ring claims, writes and commits frames and polls them one at
 * a time, the same on both.
 */
final class RingLinks {
    // Small on purpose: the three terms of an ipc publication (12 MiB) stay in the last-level cache, so writing a frame
    // does not first read a cold line from memory and the receiver reduces out of cache. A 32 MiB term doubled the
    // copy and add time per frame on the 2-core test machine. The price: an ipc publication may run at most
    // term/2 = 2 MiB ahead of its subscriber, and only the driver's conductor moves that limit (see DriverMain).
    static final String IPC_TERM_LENGTH = "4m";
    static final String UDP_TERM_LENGTH = "8m";
    /** A same-host link's ring: 4 MiB, like an ipc publication's term (see {@link #IPC_TERM_LENGTH}: it stays in cache). */
    static final int SHM_CAPACITY = 4 << 20;
    private static final String SHM_SCHEME = "shm:";

    private RingLinks() {
    }

    /** A link into this rank and the channel its sender opens with {@link #openOutgoing} (passed through the store). */
    record Incoming(InboundFrames frames, String senderChannel) {
    }

    /**
     * Opens the link of ring {@code groupKey} from {@code fromRank}: a {@link ShmLink} when that rank shares this
     * host's memory ({@link Communicator#sharesMemoryWith}), else an Aeron stream ({@link Inbound}: ipc or udp).
     */
    static Incoming openIncoming(Communicator comm, String groupKey, int fromRank, int streamId) {
        WorldConfig config = comm.config();
        if (comm.sharesMemoryWith(fromRank)) {
            ShmSpace.require(config.shmDirectory(), comm.ranksOnThisHost(), ShmLink.HEADER_BYTES + (long) SHM_CAPACITY,
                    "ring " + groupKey);
            ShmLink.Consumer consumer = new ShmLink.Consumer(config.shmDirectory()
                    .resolve("ring-" + groupKey + "-" + fromRank + "-to-" + comm.rank()), SHM_CAPACITY);
            return new Incoming(consumer, SHM_SCHEME + consumer.file());
        }
        Inbound inbound = Inbound.open(comm, fromRank, (config.jobId() + "/" + groupKey).hashCode(), streamId,
                IPC_TERM_LENGTH, UDP_TERM_LENGTH);
        return new Incoming(aeron(inbound.subscription()), inbound.senderChannel());
    }

    /** The sending end of the link whose receiver published {@code senderChannel}. */
    static Outbound openOutgoing(Communicator comm, String senderChannel, int streamId) {
        return senderChannel.startsWith(SHM_SCHEME)
                ? new ShmLink.Producer(Path.of(senderChannel.substring(SHM_SCHEME.length())))
                : aeron(comm.aeron().addExclusivePublication(senderChannel, streamId));
    }

    /** What the ring does with one received frame (length -1: not a whole frame): true = consumed, false = leave it. */
    interface FrameHandler {
        boolean onFrame(DirectBuffer buffer, int offset, int length);
    }

    interface Outbound extends AutoCloseable {
        /** > 0: claimed; else an Aeron {@code Publication} status (back pressure, not connected, ...). */
        long tryClaim(int length);

        MutableDirectBuffer buffer();

        int offset();

        void commit();

        boolean isConnected();

        /** Largest frame (header included) this link carries whole. */
        int maxFrameLength();

        String describe();

        @Override
        void close();
    }

    interface InboundFrames extends AutoCloseable {
        /** Hands the next frame, if any, to {@code handler}; 1 if it was consumed. */
        int poll(FrameHandler handler);

        boolean isConnected();

        /** The sender closed its end (or Aeron closed the stream). */
        boolean isClosed();

        String describe();

        @Override
        void close();
    }

    private static Outbound aeron(ExclusivePublication publication) {
        BufferClaim claim = new BufferClaim();
        return new Outbound() {
            public long tryClaim(int length) {
                return publication.tryClaim(length, claim);
            }

            public MutableDirectBuffer buffer() {
                return claim.buffer();
            }

            public int offset() {
                return claim.offset();
            }

            public void commit() {
                claim.commit();
            }

            public boolean isConnected() {
                return publication.isConnected();
            }

            public int maxFrameLength() {
                return publication.maxPayloadLength();
            }

            public String describe() {
                return publication.channel() + " (term length " + publication.termBufferLength() + ")";
            }

            public void close() {
                publication.close();
            }
        };
    }

    private static InboundFrames aeron(Subscription subscription) {
        return new InboundFrames() {
            private Image image;
            private FrameHandler handler;
            private final ControlledFragmentHandler adapter = (buffer, offset, length, header) -> {
                boolean whole = (header.flags() & FrameDescriptor.UNFRAGMENTED) == FrameDescriptor.UNFRAGMENTED;
                return handler.onFrame(buffer, offset, whole ? length : -1)
                        ? ControlledFragmentHandler.Action.CONTINUE : ControlledFragmentHandler.Action.ABORT;
            };

            public int poll(FrameHandler frameHandler) {
                handler = frameHandler;
                return image.controlledPoll(adapter, 1);
            }

            public boolean isConnected() {
                if (image == null && subscription.imageCount() > 0) {
                    image = subscription.imageAtIndex(0);
                }
                return image != null;
            }

            public boolean isClosed() {
                return image != null && image.isClosed();
            }

            public String describe() {
                return subscription.channel();
            }

            public void close() {
                subscription.close();
            }
        };
    }
}
