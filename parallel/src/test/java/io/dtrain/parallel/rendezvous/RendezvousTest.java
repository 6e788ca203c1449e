package io.dtrain.parallel.rendezvous;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The rendezvous store over real TCP on loopback. */
class RendezvousTest {
    private static final byte[] SECRET = "the-job-secret".getBytes(StandardCharsets.UTF_8);
    private static final int WORLD = 8;
    private RendezvousServer server;

    @BeforeEach
    void start() throws Exception {
        server = RendezvousServer.start(new InetSocketAddress("127.0.0.1", 0), "job-a", SECRET, WORLD, Duration.ofMillis(500));
    }

    @AfterEach
    void stop() {
        server.close();
    }

    private RendezvousClient client(int rank) {
        return RendezvousClient.connect("127.0.0.1", server.port(), "job-a", rank, WORLD, SECRET, Duration.ofSeconds(5));
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
                "dtrain-job-0.not-yet.invalid", 29500, "job-a", 1, 2, SECRET, Duration.ofSeconds(2)));
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
                () -> RendezvousClient.connect("127.0.0.1", server.port(), "job-a", 1, WORLD, "guess".getBytes(StandardCharsets.UTF_8), Duration.ofSeconds(5)));
        assertTrue(wrongSecret.getMessage().contains("refused"), wrongSecret.getMessage());
        RendezvousAuthException wrongJob = assertThrows(RendezvousAuthException.class,
                () -> RendezvousClient.connect("127.0.0.1", server.port(), "job-b", 1, WORLD, SECRET, Duration.ofSeconds(5)));
        assertTrue(wrongJob.getMessage().contains("refused"), wrongJob.getMessage());
        // Refused peers do not count as members that died.
        try (RendezvousClient a = client(0)) {
            assertTrue(a.getPrefix(RendezvousServer.FAIL_PREFIX).isEmpty());
        }
    }

    @Test
    void aStoreThatDoesNotKnowTheSecretIsNotJoined() throws Exception {
        try (RendezvousServer impostor = RendezvousServer.start(new InetSocketAddress("127.0.0.1", 0), "job-a", "other".getBytes(StandardCharsets.UTF_8), WORLD)) {
            // The impostor refuses us too; either way the worker never proceeds with it.
            assertThrows(RendezvousAuthException.class, () -> RendezvousClient.connect("127.0.0.1", impostor.port(), "job-a", 0, WORLD, SECRET, Duration.ofSeconds(5)));
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
            byte[] member = Protocol.nonce(Protocol.MEMBER_ID_BYTES);
            out.writeUTF("job-a");
            out.writeInt(7);
            out.writeInt(WORLD);
            out.writeInt(0);
            out.write(member);
            out.write(clientNonce);
            out.write(Protocol.hmac(SECRET, "client", serverNonce, clientNonce, "job-a", 7, WORLD, 0, member));
            out.flush();
            assertEquals(1, in.readByte());
            assertArrayEquals(Protocol.hmac(SECRET, "server", clientNonce, serverNonce, "job-a", 7, WORLD, 0, member), in.readNBytes(32));
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

    @Test
    void aSecondProcessClaimingATakenRankIsRefusedAndTheRankKeepsWorking() throws Exception {
        byte[] stale = Protocol.nonce(Protocol.MEMBER_ID_BYTES);
        String log = capturingStderr(() -> {
            try (RendezvousClient a = client(0); RendezvousClient b = client(1); RendezvousClient bHeartbeat = client(1)) {
                RendezvousAuthException refused = assertThrows(RendezvousAuthException.class, () -> RendezvousClient.connect(
                        "127.0.0.1", server.port(), "job-a", 1, WORLD, SECRET, Duration.ofSeconds(5), stale));
                assertTrue(refused.getMessage().contains("rank 1 is already taken by another worker process"), refused.getMessage());
                assertTrue(refused.getMessage().contains("restart the whole job"), refused.getMessage());
                // The real rank 1 is unaffected: not reported dead, its connections still serve.
                Thread.sleep(200);
                assertTrue(a.tryGet(RendezvousServer.FAIL_PREFIX + 1).isEmpty());
                b.set("still", "here");
                assertEquals("here", bHeartbeat.getString("still", Duration.ofSeconds(1)));
            }
            // Its rank stays its own after it left: no restart protocol hands it to another process.
            assertThrows(RendezvousAuthException.class, () -> RendezvousClient.connect(
                    "127.0.0.1", server.port(), "job-a", 1, WORLD, SECRET, Duration.ofSeconds(5), stale));
        });
        assertTrue(log.contains("refused") && log.contains("rank 1 is already taken"), log);
    }

    @Test
    void aNewRoundHandsTheRanksOverAndRefusesWorkersOfTheOldOne() throws Exception {
        try (RendezvousClient agent = RendezvousClient.connectAgent("127.0.0.1", server.port(), "job-a", 0, WORLD, SECRET,
                Duration.ofSeconds(5))) {
            RendezvousClient old = client(1);
            old.set("node/1", "h");
            agent.set(RendezvousServer.AGENT_PREFIX + "note", "kept");
            server.newRound(1);
            // the old round's keys are gone, its connection closed without a failure reported; the agents' keys stay
            assertTrue(agent.tryGet("node/1").isEmpty());
            assertTrue(agent.getPrefix(RendezvousServer.FAIL_PREFIX).isEmpty());
            assertEquals("kept", agent.getString(RendezvousServer.AGENT_PREFIX + "note", Duration.ofSeconds(1)));
            assertThrows(RuntimeException.class, () -> old.set("x", "y"));
            old.close();
            // rank 1 of round 1 joins although round 0's rank 1 held it; a worker of round 0 is refused with the reason
            try (RendezvousClient fresh = RendezvousClient.connect("127.0.0.1", server.port(), "job-a", 1, WORLD, 1, SECRET,
                    Duration.ofSeconds(5))) {
                fresh.set("node/1", "h");
                RendezvousAuthException stale = assertThrows(RendezvousAuthException.class, () -> RendezvousClient.connect(
                        "127.0.0.1", server.port(), "job-a", 2, WORLD, 0, SECRET, Duration.ofSeconds(5)));
                assertTrue(stale.getMessage().contains("belongs to restart round 0 (DTRAIN_RESTART_COUNT) but the job is"
                        + " at round 1 (a worker of an earlier round"), stale.getMessage());
            }
        }
    }

    @Test
    void anUnreachableStoreIsRetriedWithBackoffAndNamedWithAttemptsAndTime() throws Exception {
        int port;
        try (java.net.ServerSocket free = new java.net.ServerSocket(0)) {
            port = free.getLocalPort();
        }
        RendezvousTimeoutException e = assertThrows(RendezvousTimeoutException.class, () -> RendezvousClient.connect(
                "127.0.0.1", port, "job-a", 0, WORLD, SECRET, Duration.ofSeconds(2)));
        // 100 + 200 + 400 + 800 ms, then what is left of the 2 s: 6 attempts
        assertTrue(e.getMessage().matches("no rendezvous store at 127\\.0\\.0\\.1:" + port + ": [56] connection attempts"
                + " over 2\\.\\d s \\(backoff 100 ms doubling to 5 s; DTRAIN_RENDEZVOUS_TIMEOUT 2 s\\), the last one:"
                + " Connection refused; check that 127\\.0\\.0\\.1 is node 0's address and " + port + " its port.*"),
                e.getMessage());
    }

    @Test
    void aWorkerOfAnotherWorldSizeOrOutsideTheWorldIsRefusedWithTheReason() {
        RendezvousAuthException size = assertThrows(RendezvousAuthException.class, () -> RendezvousClient.connect(
                "127.0.0.1", server.port(), "job-a", 1, WORLD + 1, SECRET, Duration.ofSeconds(5)));
        assertTrue(size.getMessage().contains("WORLD_SIZE 9 differs from the job's 8"), size.getMessage());
        RendezvousAuthException rank = assertThrows(RendezvousAuthException.class, () -> RendezvousClient.connect(
                "127.0.0.1", server.port(), "job-a", WORLD, WORLD, SECRET, Duration.ofSeconds(5)));
        assertTrue(rank.getMessage().contains("rank 8 is outside 0..7"), rank.getMessage());
    }

    @Test
    void idleConnectionsAreClosedAfterTheHandshakeTimeoutLoggedAtMostOncePerInterval() throws Exception {
        List<Socket> idle = new ArrayList<>();
        String log = capturingStderr(() -> {
            for (int i = 0; i < 40; i++) {
                idle.add(new Socket("127.0.0.1", server.port()));
            }
            long start = System.nanoTime();
            for (Socket socket : idle) {
                socket.setSoTimeout(5000);
                // Greeting (or nothing, if the handshake pool was full), then end of stream: the store closed it.
                InputStream in = socket.getInputStream();
                while (in.read() >= 0) {
                    // the greeting
                }
            }
            long ms = (System.nanoTime() - start) / 1_000_000;
            assertTrue(ms < 3000, "idle connections closed only after " + ms + " ms");
            // Beyond the handshake pool they were closed at once; the rest after the timeout.
            assertTrue(server.refusedConnections() >= 40 - RendezvousServer.MAX_HANDSHAKES, "refused " + server.refusedConnections());
            assertTrue(server.timedOutHandshakes() >= 1, "timed out " + server.timedOutHandshakes());
            // The store still serves workers.
            try (RendezvousClient a = client(0)) {
                a.set("k", "v");
            }
        });
        for (Socket socket : idle) {
            socket.close();
        }
        long lines = log.lines().filter(l -> l.contains("no complete handshake") || l.contains("handshakes already in progress")).count();
        assertTrue(lines >= 1 && lines <= 2, "rate-limited log: " + lines + " lines\n" + log);
    }

    @Test
    void whatAStrangerSendsIsLoggedCutAndEscaped() throws Exception {
        String log = capturingStderr(() -> {
            // A 64 MiB line: its first two bytes read as a huge job id length, refused without reading the rest.
            try (Socket socket = new Socket("127.0.0.1", server.port())) {
                CompletableFuture<Void> writing = CompletableFuture.runAsync(() -> {
                    try {
                        byte[] line = new byte[1 << 20];
                        java.util.Arrays.fill(line, (byte) 'A');
                        for (int i = 0; i < 64; i++) {
                            socket.getOutputStream().write(line);
                        }
                    } catch (java.io.IOException expected) {
                        // the store closed the connection
                    }
                });
                socket.setSoTimeout(5000);
                try {
                    socket.getInputStream().readAllBytes();
                } catch (java.io.IOException reset) {
                    // closed with unread input: a reset
                }
                writing.get(10, TimeUnit.SECONDS);
            }
            // A job id with a forged log line in it, and a long one (each to a fresh store: refusals are rate-limited).
            for (String jobId : new String[] {"x\nWARN fake line \u00e9", "y".repeat(200)}) {
                try (RendezvousServer fresh = RendezvousServer.start(new InetSocketAddress("127.0.0.1", 0), "job-a", SECRET, WORLD);
                     Socket socket = new Socket("127.0.0.1", fresh.port())) {
                    DataInputStream in = new DataInputStream(socket.getInputStream());
                    DataOutputStream out = new DataOutputStream(socket.getOutputStream());
                    in.readNBytes(8 + Protocol.NONCE_BYTES);
                    out.writeUTF(jobId);
                    out.writeInt(0);
                    out.writeInt(WORLD);
                    out.writeInt(0);
                    out.write(new byte[Protocol.MEMBER_ID_BYTES + Protocol.NONCE_BYTES + Protocol.MAC_BYTES]);
                    out.flush();
                    assertEquals(0, in.readByte());
                    assertTrue(in.readUTF().contains("wrong job id or secret"));
                }
            }
        });
        assertTrue(log.contains("job id of 16705 bytes"), log);
        assertTrue(log.contains("'x\\x0aWARN fake line \\xe9'"), log);
        assertTrue(log.contains("'" + "y".repeat(64) + "...(200 characters)'"), log);
        assertTrue(log.lines().allMatch(l -> l.length() < 400), "a log line over 400 characters:\n" + log);
        assertTrue(!log.contains("AAAAAAAAAAAAAAAAAAAAAAAAA") && !log.contains("\nWARN fake line"), log);
    }

    private interface Scenario {
        void run() throws Exception;
    }

    /** Runs {@code scenario} with System.err (where slf4j-simple logs) captured; returns what was logged. */
    private static String capturingStderr(Scenario scenario) throws Exception {
        java.io.PrintStream original = System.err;
        java.io.ByteArrayOutputStream captured = new java.io.ByteArrayOutputStream();
        System.setErr(new java.io.PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            scenario.run();
        } finally {
            System.setErr(original);
        }
        String log = captured.toString(StandardCharsets.UTF_8);
        original.print(log);
        return log;
    }
}
