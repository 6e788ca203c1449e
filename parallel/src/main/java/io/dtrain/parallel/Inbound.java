package io.dtrain.parallel;

import io.aeron.Subscription;
import io.dtrain.parallel.transport.UdpAuthentication;
import java.net.InetAddress;
import java.time.Duration;

/**
 * One incoming Aeron stream of this rank and the channel its sender must publish on: {@code aeron:ipc} when the
 * sender runs on this host (and the transport is not forced to udp), else {@code aeron:udp} to this rank's
 * advertised address. The session id ties the stream to one job and purpose: a shared or external driver may still
 * hold a dead job's publication on the same stream id, and a session-specific subscription never sees it.
 *
 * @param senderChannel the channel URI the sender passes to addExclusivePublication (exchanged through the store)
 */
record Inbound(Subscription subscription, String senderChannel) {
    static final int LOOPBACK_MTU = 65504;
    /** Leaves room for the 28-byte authentication trailer in Aeron's largest datagram (65504 bytes). */
    static final int AUTHENTICATED_LOOPBACK_MTU = 65472;
    static final int NETWORK_MTU = 8192;
    static final String NETWORK_MTU_VARIABLE = "DTRAIN_UDP_MTU";

    /**
     * The Aeron mtu (largest datagram) of udp links between hosts: {@value #NETWORK_MTU} by default, which fits a 9000-byte
     * jumbo frame whole; {@value #NETWORK_MTU_VARIABLE} may raise it up to 64 KiB, each datagram then travelling as
     * several IP fragments (fewer datagrams, so fewer system calls and MACs per byte: 1.5-1.7x the busbw at 64-256 MiB
     * between two network namespaces, benchmarks/RESULTS.md "Round 3"; but one lost fragment loses the whole datagram,
     * so for clean networks only).
     */
    static int networkMtu(java.util.Map<String, String> env, boolean authenticated) {
        String value = env.get(NETWORK_MTU_VARIABLE);
        if (value == null) {
            return NETWORK_MTU;
        }
        long mtu = io.dtrain.common.ByteSizes.parse(value, NETWORK_MTU_VARIABLE);
        int max = authenticated ? AUTHENTICATED_LOOPBACK_MTU : LOOPBACK_MTU;
        if (mtu < 1024 || mtu > max || mtu % 32 != 0) {
            throw new io.dtrain.common.UserFacingException(NETWORK_MTU_VARIABLE + "=" + value + " must be a multiple of 32"
                    + " from 1024 to " + max + " bytes (" + (authenticated ? "with" : "without")
                    + " the udp MAC's 28-byte trailer); the default is " + NETWORK_MTU);
        }
        return (int) mtu;
    }

    static Inbound open(Communicator comm, int fromRank, int sessionId, int streamId, String ipcTermLength,
                        String udpTermLength) {
        WorldConfig config = comm.config();
        boolean ipc = config.transport() != WorldConfig.Transport.UDP
                && comm.nodeId(fromRank).equals(comm.nodeId(comm.rank()));
        if (ipc) {
            return new Inbound(comm.aeron().addSubscription("aeron:ipc?session-id=" + sessionId, streamId),
                    "aeron:ipc?term-length=" + ipcTermLength + "|mtu=" + LOOPBACK_MTU + "|session-id=" + sessionId);
        }
        InetAddress address = comm.advertiseAddress();
        // Every udp link authenticates its frames with the job key and a salt of its own, unless the job runs with
        // DTRAIN_INSECURE_TRANSPORT (transport.UdpAuthentication); the receiver decides, the sender follows.
        byte[] jobKey = config.udpJobKey();
        String auth = jobKey == null ? "" : "|" + UdpAuthentication.CHANNEL_PARAM + "=" + UdpAuthentication.newLinkParam(jobKey);
        int mtu = !address.isLoopbackAddress() ? networkMtu(System.getenv(), jobKey != null)
                : jobKey == null ? LOOPBACK_MTU : AUTHENTICATED_LOOPBACK_MTU;
        Subscription subscription = comm.aeron().addSubscription("aeron:udp?endpoint=" + address.getHostAddress()
                + ":0|so-rcvbuf=4m|rcv-wnd=4m|session-id=" + sessionId + auth, streamId);
        String endpoint = awaitResolvedEndpoint(subscription, config.rendezvousTimeout());
        return new Inbound(subscription, "aeron:udp?endpoint=" + endpoint + "|mtu=" + mtu + "|term-length="
                + udpTermLength + "|so-sndbuf=4m|session-id=" + sessionId + auth);
    }

    private static String awaitResolvedEndpoint(Subscription subscription, Duration wait) {
        long deadline = System.nanoTime() + wait.toNanos();
        String endpoint;
        while ((endpoint = subscription.resolvedEndpoint()) == null) {
            if (System.nanoTime() > deadline) {
                throw new CollectiveException("Aeron did not bind UDP subscription " + subscription.channel());
            }
            pause();
        }
        return endpoint;
    }

    /** One millisecond between polls while connecting; an interrupt aborts the connection. */
    static void pause() {
        try {
            Thread.sleep(1);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CollectiveException("interrupted while connecting Aeron streams", e);
        }
    }
}
