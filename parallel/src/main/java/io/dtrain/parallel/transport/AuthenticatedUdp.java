package io.dtrain.parallel.transport;

import io.aeron.driver.DataPacketDispatcher;
import io.aeron.driver.DriverConductorProxy;
import io.aeron.driver.MediaDriver;
import io.aeron.driver.media.ReceiveChannelEndpoint;
import io.aeron.driver.media.SendChannelEndpoint;
import io.aeron.driver.media.UdpChannel;
import io.aeron.protocol.DataHeaderFlyweight;
import io.aeron.protocol.ErrorFlyweight;
import io.aeron.protocol.NakFlyweight;
import io.aeron.protocol.ResponseSetupFlyweight;
import io.aeron.protocol.RttMeasurementFlyweight;
import io.aeron.protocol.SetupFlyweight;
import io.aeron.protocol.StatusMessageFlyweight;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.HexFormat;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.status.AtomicCounter;

/**
 * The media driver's udp endpoints for channels that ask for authentication ({@link UdpAuthentication#CHANNEL_PARAM}):
 * Aeron's own endpoints, with every datagram sealed on the way out and checked on the way in by a
 * {@link DatagramAuthenticator} before Aeron's receiver sees it (a datagram that fails is never inserted into an
 * image, so it can neither corrupt nor displace the real frame). Channels without the parameter get Aeron's plain
 * endpoints ({@code DTRAIN_INSECURE_TRANSPORT}). Installed by {@link DriverMain} through the driver context's endpoint
 * suppliers.
 */
final class AuthenticatedUdp {
    private AuthenticatedUdp() {
    }

    /** Installs the suppliers; authenticated channels take their job's key from {@code keys}. */
    static MediaDriver.Context install(MediaDriver.Context context, UdpKeys keys) {
        return context
                .sendChannelEndpointSupplier((channel, status, ctx) -> {
                    String param = channel.channelUri().get(UdpAuthentication.CHANNEL_PARAM);
                    return param == null ? new SendChannelEndpoint(channel, status, ctx)
                            : new Send(channel, status, ctx, authenticator(keys, param, DatagramAuthenticator.DATA, channel, ctx));
                })
                .receiveChannelEndpointSupplier((channel, dispatcher, status, ctx) -> {
                    String param = channel.channelUri().get(UdpAuthentication.CHANNEL_PARAM);
                    return param == null ? new ReceiveChannelEndpoint(channel, dispatcher, status, ctx)
                            : new Receive(channel, dispatcher, status, ctx,
                            authenticator(keys, param, DatagramAuthenticator.CONTROL, channel, ctx));
                });
    }

    /**
     * Seals and checks a few thousand datagrams with a throwaway key before the driver serves anyone: AES-GCM is fast
     * only once C2 has compiled it onto the JDK's intrinsics, and interpreted it runs at a few MB/s, which would make a
     * job's first seconds over udp crawl (measured: 54 ms for a 1 MiB AllReduce right after the driver started).
     */
    static void warmUp() {
        AtomicCounter counter = new AtomicCounter(new UnsafeBuffer(new byte[64]), 0);
        byte[] key = new byte[UdpAuthentication.JOB_KEY_BYTES];
        DatagramAuthenticator sender = DatagramAuthenticator.forWarmUp(key, new byte[UdpAuthentication.SALT_BYTES],
                DatagramAuthenticator.DATA, counter);
        DatagramAuthenticator receiver = DatagramAuthenticator.forWarmUp(key, new byte[UdpAuthentication.SALT_BYTES],
                DatagramAuthenticator.CONTROL, counter);
        ByteBuffer datagram = ByteBuffer.allocateDirect(8192).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        UnsafeBuffer received = new UnsafeBuffer(ByteBuffer.allocateDirect(8192 + DatagramAuthenticator.TRAILER_BYTES));
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(3);
        for (int i = 0; i < 20_000 && System.nanoTime() < deadline; i++) {
            int length = i % 2 == 0 ? 8192 : 64;
            datagram.clear().limit(length);
            datagram.putShort(io.aeron.protocol.HeaderFlyweight.TYPE_FIELD_OFFSET, (short) io.aeron.protocol.HeaderFlyweight.HDR_TYPE_DATA);
            ByteBuffer sealed = sender.seal(datagram);
            int sealedLength = sealed.remaining();
            received.putBytes(0, sealed, sealed.position(), sealedLength);
            if (receiver.verify(received, sealedLength, null) != null) {
                throw new IllegalStateException("the udp authentication does not verify its own datagrams");
            }
        }
    }

    /** Runs on the driver's conductor thread (endpoints are made there), so it may allocate the drop counter. */
    private static DatagramAuthenticator authenticator(UdpKeys keys, String param, byte sendDirection, UdpChannel channel,
                                                       MediaDriver.Context context) {
        int dot = param.indexOf('.');
        if (dot != 2 * UdpAuthentication.SALT_BYTES) {
            throw new IllegalArgumentException(UdpAuthentication.CHANNEL_PARAM + "=" + param + " is not SALT.KEYID");
        }
        byte[] jobKey = keys.key(param.substring(dot + 1));
        byte[] salt = HexFormat.of().parseHex(param.substring(0, dot));
        String where = channel.canonicalForm();
        AtomicCounter dropped = context.countersManager().newCounter(
                "dtrain udp datagrams dropped (not authenticated): " + where, UdpAuthentication.DROPPED_COUNTER_TYPE_ID);
        return new DatagramAuthenticator(jobKey, salt, sendDirection, dropped, where);
    }

    /** A publication's endpoint: seals data, setup and heartbeats; checks status messages, NAKs and RTT replies. */
    static final class Send extends SendChannelEndpoint {
        private final DatagramAuthenticator auth;
        /** The sender of the datagram being checked (the poller passes it only after the check). */
        private InetSocketAddress from;

        Send(UdpChannel channel, AtomicCounter status, MediaDriver.Context context, DatagramAuthenticator auth) {
            super(channel, status, context);
            this.auth = auth;
        }

        private final ByteBuffer[] gather = new ByteBuffer[2];

        /**
         * A connected unicast channel (dtrain's links) sends the datagram and its trailer in one gathering write,
         * straight from the publication's term; anything else goes through a sealed copy.
         */
        @Override
        public int send(ByteBuffer buffer) {
            int length = buffer.remaining();
            if (sendDatagramChannel == null || !sendDatagramChannel.isConnected()) {
                return sent(super.send(auth.seal(buffer)), length);
            }
            gather[1] = auth.trailer(buffer);
            gather[0] = buffer;
            long written = 0;
            try {
                written = sendDatagramChannel.write(gather);
            } catch (java.net.PortUnreachableException ignored) {
                // the receiver is not there (yet): as Aeron's own send
            } catch (java.io.IOException e) {
                onSendError(e, connectAddress, errorHandler);
            }
            return sent((int) written, length);
        }

        @Override
        public int send(ByteBuffer buffer, InetSocketAddress endpointAddress) {
            int length = buffer.remaining();
            return sent(super.send(auth.seal(buffer), endpointAddress), length);
        }

        @Override
        public InetSocketAddress receive(ByteBuffer buffer) {
            from = super.receive(buffer);
            return from;
        }

        @Override
        public boolean isValidFrame(UnsafeBuffer buffer, int length) {
            // Authenticity first: whatever fails it is counted and logged here, garbage included.
            return auth.verify(buffer, length, from) == null && super.isValidFrame(buffer, length);
        }

        @Override
        public void onStatusMessage(StatusMessageFlyweight msg, UnsafeBuffer buffer, int length, InetSocketAddress from,
                                    DriverConductorProxy conductorProxy) {
            super.onStatusMessage(msg, buffer, length - DatagramAuthenticator.TRAILER_BYTES, from, conductorProxy);
        }

        @Override
        public void onError(ErrorFlyweight msg, UnsafeBuffer buffer, int length, InetSocketAddress from,
                            DriverConductorProxy conductorProxy) {
            super.onError(msg, buffer, length - DatagramAuthenticator.TRAILER_BYTES, from, conductorProxy);
        }

        @Override
        public void onNakMessage(NakFlyweight msg, UnsafeBuffer buffer, int length, InetSocketAddress from) {
            super.onNakMessage(msg, buffer, length - DatagramAuthenticator.TRAILER_BYTES, from);
        }

        @Override
        public void onRttMeasurement(RttMeasurementFlyweight msg, UnsafeBuffer buffer, int length, InetSocketAddress from) {
            super.onRttMeasurement(msg, buffer, length - DatagramAuthenticator.TRAILER_BYTES, from);
        }

        @Override
        public void onResponseSetup(ResponseSetupFlyweight msg, UnsafeBuffer buffer, int length, InetSocketAddress from,
                                    DriverConductorProxy conductorProxy) {
            super.onResponseSetup(msg, buffer, length - DatagramAuthenticator.TRAILER_BYTES, from, conductorProxy);
        }

        @Override
        public void closeIndicators() {
            super.closeIndicators();
            auth.close();
        }
    }

    /** A subscription's endpoint: checks data, padding, setup and RTT frames; seals status messages, NAKs and RTT. */
    static final class Receive extends ReceiveChannelEndpoint {
        private final DatagramAuthenticator auth;
        /** The sender of the datagram being checked (the poller passes it only after the check). */
        private InetSocketAddress from;

        Receive(UdpChannel channel, DataPacketDispatcher dispatcher, AtomicCounter status, MediaDriver.Context context,
                DatagramAuthenticator auth) {
            super(channel, dispatcher, status, context);
            this.auth = auth;
        }

        @Override
        public int sendTo(ByteBuffer buffer, InetSocketAddress remoteAddress) {
            int length = buffer.remaining();
            return sent(super.sendTo(auth.seal(buffer), remoteAddress), length);
        }

        @Override
        public InetSocketAddress receive(ByteBuffer buffer) {
            from = super.receive(buffer);
            return from;
        }

        @Override
        public boolean isValidFrame(UnsafeBuffer buffer, int length) {
            // Authenticity first: whatever fails it is counted and logged here, garbage included.
            return auth.verify(buffer, length, from) == null && super.isValidFrame(buffer, length);
        }

        @Override
        public int onDataPacket(DataHeaderFlyweight header, UnsafeBuffer buffer, int length, InetSocketAddress from,
                                int transportIndex) {
            return super.onDataPacket(header, buffer, length - DatagramAuthenticator.TRAILER_BYTES, from, transportIndex);
        }

        @Override
        public void onSetupMessage(SetupFlyweight header, UnsafeBuffer buffer, int length, InetSocketAddress from,
                                   int transportIndex) {
            super.onSetupMessage(header, buffer, length - DatagramAuthenticator.TRAILER_BYTES, from, transportIndex);
        }

        @Override
        public void onRttMeasurement(RttMeasurementFlyweight header, UnsafeBuffer buffer, int length,
                                     InetSocketAddress from, int transportIndex) {
            super.onRttMeasurement(header, buffer, length - DatagramAuthenticator.TRAILER_BYTES, from, transportIndex);
        }

        @Override
        public void closeIndicators() {
            super.closeIndicators();
            auth.close();
        }
    }

    /** What Aeron's caller expects back: the length of its datagram if all of the sealed one went out. */
    private static int sent(int sealedBytesSent, int length) {
        return sealedBytesSent == length + DatagramAuthenticator.TRAILER_BYTES ? length : Math.min(sealedBytesSent, length - 1);
    }
}
