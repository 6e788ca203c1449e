package io.dtrain.parallel;

import io.aeron.ExclusivePublication;
import io.aeron.Image;
import io.aeron.Subscription;
import io.aeron.logbuffer.BufferClaim;
import io.aeron.logbuffer.ControlledFragmentHandler;
import io.aeron.logbuffer.FrameDescriptor;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;

/**
 * The two ends of one ring link, over Aeron (an exclusive publication and a subscription's image, adapted here) or
 * over a {@link ShmLink} (whose ends implement these): the ring claims, writes and commits frames and polls them one at
 * a time, the same on both.
 */
final class RingLinks {
    private RingLinks() {
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

    static Outbound aeron(ExclusivePublication publication) {
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

    static InboundFrames aeron(Subscription subscription) {
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
