package io.dtrain.parallel.rendezvous;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The rendezvous store over real TCP on loopback. */
class RendezvousTest {
    private static final byte[] SECRET = "the-job-secret".getBytes(StandardCharsets.UTF_8);
    private RendezvousServer server;

    @BeforeEach
    void start() throws Exception {
        server = RendezvousServer.start(new InetSocketAddress("127.0.0.1", 0), "job-a", SECRET);
    }

    @AfterEach
    void stop() {
        server.close();
    }

    private RendezvousClient client(int rank) {
        return RendezvousClient.connect("127.0.0.1", server.port(), "job-a", rank, SECRET, Duration.ofSeconds(5));
    }

    @Test
    void setGetAddPrefixAndBlockingGet() throws Exception {
        try (RendezvousClient a = client(0); RendezvousClient b = client(1)) {
            a.set("k", "v");
            assertEquals("v", b.getString("k", Duration.ofSeconds(1)));
            assertTrue(b.tryGet("missing").isEmpty());
            assertEquals(3, a.add("counter", 3));
            assertEquals(5, b.add("counter", 2));
            b.set("p/1", "x");
            b.set("p/2", "y");
            assertEquals(2, a.getPrefix("p/").size());
            assertArrayEquals("y".getBytes(StandardCharsets.UTF_8), a.getPrefix("p/").get("p/2"));

            CompletableFuture<String> waiting = CompletableFuture.supplyAsync(() -> b.getString("later", Duration.ofSeconds(10)));
            Thread.sleep(200);
            assertTrue(!waiting.isDone(), "get returned before the key was set");
            a.set("later", "now");
            assertEquals("now", waiting.get(5, TimeUnit.SECONDS));

            long start = System.nanoTime();
            RendezvousTimeoutException timeout = assertThrows(RendezvousTimeoutException.class,
                    () -> a.get("never", Duration.ofMillis(300)));
            assertTrue(System.nanoTime() - start >= TimeUnit.MILLISECONDS.toNanos(300));
            assertTrue(timeout.getMessage().contains("'never'"), timeout.getMessage());
        }
    }

    @Test
    void aStoreNameThatDoesNotResolveYetIsRetriedUntilTheTimeout() {
        long t0 = System.nanoTime();
        RendezvousTimeoutException e = assertThrows(RendezvousTimeoutException.class, () -> RendezvousClient.connect(
                "dtrain-job-0.not-yet.invalid", 29500, "job-a", 1, SECRET, Duration.ofSeconds(2)));
        assertTrue(e.getMessage().contains("no rendezvous store at dtrain-job-0.not-yet.invalid:29500 after 2 s"),
                e.getMessage());
        assertTrue(System.nanoTime() - t0 >= 1_900_000_000L, "retried, not refused at once");
    }

    @Test
    void clockOffsetToTheStoreOnTheSameHostIsNearZero() {
        try (RendezvousClient a = client(0)) {
            long offset = a.measureClockOffsetNanos(16);
            assertTrue(Math.abs(offset) < TimeUnit.MILLISECONDS.toNanos(5), "offset " + offset + " ns");
        }
    }

    @Test
    void aWrongSecretOrJobIdIsRefused() {
        RendezvousAuthException wrongSecret = assertThrows(RendezvousAuthException.class,
                () -> RendezvousClient.connect("127.0.0.1", server.port(), "job-a", 1, "guess".getBytes(StandardCharsets.UTF_8), Duration.ofSeconds(5)));
        assertTrue(wrongSecret.getMessage().contains("refused"), wrongSecret.getMessage());
        RendezvousAuthException wrongJob = assertThrows(RendezvousAuthException.class,
                () -> RendezvousClient.connect("127.0.0.1", server.port(), "job-b", 1, SECRET, Duration.ofSeconds(5)));
        assertTrue(wrongJob.getMessage().contains("refused"), wrongJob.getMessage());
        // Refused peers do not count as members that died.
        try (RendezvousClient a = client(0)) {
            assertTrue(a.getPrefix(RendezvousServer.FAIL_PREFIX).isEmpty());
        }
    }

    @Test
    void aStoreThatDoesNotKnowTheSecretIsNotJoined() throws Exception {
        try (RendezvousServer impostor = RendezvousServer.start(new InetSocketAddress("127.0.0.1", 0), "job-a", "other".getBytes(StandardCharsets.UTF_8))) {
            // The impostor refuses us too; either way the worker never proceeds with it.
            assertThrows(RendezvousAuthException.class, () -> RendezvousClient.connect("127.0.0.1", impostor.port(), "job-a", 0, SECRET, Duration.ofSeconds(5)));
        }
    }

    @Test
    void theSecretNeverCrossesTheWire() throws Exception {
        // Speak the protocol by hand: what the client sends is job id, rank, nonce and a MAC, never the secret.
        try (Socket socket = new Socket("127.0.0.1", server.port())) {
            DataInputStream in = new DataInputStream(socket.getInputStream());
            DataOutputStream out = new DataOutputStream(socket.getOutputStream());
            assertEquals(Protocol.MAGIC, in.readInt());
            assertEquals(Protocol.VERSION, in.readInt());
            byte[] serverNonce = in.readNBytes(Protocol.NONCE_BYTES);
            byte[] clientNonce = Protocol.nonce();
            out.writeUTF("job-a");
            out.writeInt(7);
            out.write(clientNonce);
            out.write(Protocol.hmac(SECRET, "client", serverNonce, clientNonce, "job-a", 7));
            out.flush();
            assertEquals(1, in.readByte());
            assertArrayEquals(Protocol.hmac(SECRET, "server", clientNonce, serverNonce, "job-a", 7), in.readNBytes(32));
        }
    }

    @Test
    void aRankWhoseConnectionDropsWithoutGoodbyeIsReportedFailed() throws Exception {
        try (RendezvousClient a = client(0)) {
            RendezvousClient b = client(3);
            // Simulate a crash: drop the socket without BYE.
            java.lang.reflect.Field f = RendezvousClient.class.getDeclaredField("socket");
            f.setAccessible(true);
            ((Socket) f.get(b)).close();
            String failure = a.getString(RendezvousServer.FAIL_PREFIX + 3, Duration.ofSeconds(5));
            assertTrue(failure.contains("rank 3"), failure);
            RendezvousClient c = client(4);
            c.close(); // with goodbye: not reported
            Thread.sleep(200);
            assertTrue(a.tryGet(RendezvousServer.FAIL_PREFIX + 4).isEmpty());
        }
    }
}
