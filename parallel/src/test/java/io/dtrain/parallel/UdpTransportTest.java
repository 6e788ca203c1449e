package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * AllReduce over {@code aeron:udp}: on loopback within one host, and between two "hosts" made of network namespaces
 * joined by a veth pair (10.213.x.0/24, inside the namespaces only), each with its own media driver.
 */
class UdpTransportTest {

    @Test
    void allReduceOverUdpOnLoopback() throws IOException {
        Path jobDir = Files.createTempDirectory(Path.of("/dev/shm"), "dtrain-test-");
        Path aeronDir = jobDir.resolve("aeron");
        try {
            Map<String, String> env = Workers.jobEnv(3, aeronDir, Duration.ofSeconds(20));
            env.put("DTRAIN_TRANSPORT", "udp");
            List<Workers.Result> results = Workers.run(3, "udp", env, rank -> List.of(), Duration.ofSeconds(90));
            assertAllOkAndIdentical(results);
        } finally {
            Workers.cleanUp(jobDir, aeronDir);
        }
    }

    @Test
    void allReduceBetweenTwoHostsOverUdp() throws Exception {
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")),
                "skipped: the two-host test needs root to create network namespaces (ip netns)");
        Assumptions.assumeTrue(run("ip", "-V") == 0, "skipped: the 'ip' command (iproute2) is missing");
        String id = Long.toString(ProcessHandle.current().pid() % 10000);
        int subnet = (int) (ProcessHandle.current().pid() % 200) + 20;
        String nsA = "dtrainA" + id;
        String nsB = "dtrainB" + id;
        String vethA = "dtva" + id;
        String vethB = "dtvb" + id;
        String addrA = "10.213." + subnet + ".1";
        String addrB = "10.213." + subnet + ".2";
        Path jobDir = Files.createTempDirectory(Path.of("/dev/shm"), "dtrain-test-");
        Path aeronA = jobDir.resolve("hostA").resolve("aeron");
        Path aeronB = jobDir.resolve("hostB").resolve("aeron");
        try {
            Assumptions.assumeTrue(run("ip", "netns", "add", nsA) == 0,
                    "skipped: cannot create network namespaces here (ip netns add failed: no CAP_SYS_ADMIN?)");
            check(run("ip", "netns", "add", nsB));
            check(run("ip", "link", "add", vethA, "type", "veth", "peer", "name", vethB));
            check(run("ip", "link", "set", vethA, "netns", nsA));
            check(run("ip", "link", "set", vethB, "netns", nsB));
            check(run("ip", "-n", nsA, "addr", "add", addrA + "/24", "dev", vethA));
            check(run("ip", "-n", nsB, "addr", "add", addrB + "/24", "dev", vethB));
            for (String[] nsDev : new String[][] {{nsA, vethA}, {nsB, vethB}}) {
                check(run("ip", "-n", nsDev[0], "link", "set", nsDev[1], "mtu", "9000"));
                check(run("ip", "-n", nsDev[0], "link", "set", nsDev[1], "up"));
                check(run("ip", "-n", nsDev[0], "link", "set", "lo", "up"));
            }
            // Ranks 0,1 on host A (a shared-memory link between them), ranks 2,3 on host B; the ring crosses hosts twice
            // over UDP.
            Map<String, String> env = Workers.jobEnv(4, aeronA, Duration.ofSeconds(20));
            env.put("MASTER_ADDR", addrA);
            List<Workers.Result> results = Workers.run(4, "udp", env, rank -> List.of(),
                    rank -> List.of("ip", "netns", "exec", rank < 2 ? nsA : nsB, "env",
                            "DTRAIN_NODE_ID=" + (rank < 2 ? "hostA" : "hostB"),
                            "DTRAIN_AERON_DIR=" + (rank < 2 ? aeronA : aeronB)),
                    Duration.ofSeconds(120));
            assertAllOkAndIdentical(results);
        } finally {
            Workers.cleanUp(jobDir, aeronA, aeronB);
            run("ip", "netns", "del", nsA);
            run("ip", "netns", "del", nsB);
        }
    }

    /**
     * A job over udp while someone sends its ranks' udp ports garbage, truncated and bit-flipped copies of its own
     * datagrams, and replays datagrams of this run and of an earlier run of the same job (same id and secret): every
     * such datagram is dropped by the driver (counted exactly, logged) and every float64 result is bit for bit the
     * undisturbed run's.
     */
    @Test
    void forgedGarbledAndReplayedDatagramsAreDroppedAndTheResultsAreAnUndisturbedRunsBitForBit() throws Exception {
        Path jobA = Files.createTempDirectory(Path.of("/dev/shm"), "dtrain-test-");
        Path jobB = Files.createTempDirectory(Path.of("/dev/shm"), "dtrain-test-");
        Path captureA = Files.createTempDirectory("dtrain-capture-");
        Path captureB = Files.createTempDirectory("dtrain-capture-");
        Workers.Running disturbed = null;
        try {
            Map<String, String> env = Workers.jobEnv(2, jobA.resolve("aeron"), Duration.ofSeconds(30));
            env.put("DTRAIN_TRANSPORT", "udp");
            List<Workers.Result> quiet = Workers.run(2, "steady", env,
                    rank -> List.of("-Dsteady.rounds=35", "-Ddtrain.test.captureDatagrams=" + captureA), Duration.ofSeconds(90));
            Map<String, String> expected = new java.util.HashMap<>();
            for (String line : quiet.get(0).lines("CRC round ")) {
                String[] words = line.split(" ");
                expected.put(words[2], words[3]);
            }
            assertEquals(35, expected.size(), quiet.get(0)::toString);
            assertEquals("DROPPED 0", quiet.get(0).lines("DROPPED").get(0));

            // The same job again (same id and secret), its own driver; this time under attack.
            env.put("DTRAIN_AERON_DIR", jobB.resolve("aeron").toString());
            Path stop = jobB.resolve("stop");
            disturbed = Workers.startJob(2, "steady", env,
                    rank -> List.of("-Dstop.file=" + stop, "-Ddtrain.test.captureDatagrams=" + captureB));
            Map<Integer, Integer> portByStream = new java.util.HashMap<>();
            for (int rank = 0; rank < 2; rank++) {
                java.util.regex.Matcher m = disturbed.awaitLog(rank, "group world rank " + rank + ": receiving from .*"
                        + " sending to rank (\\d+) over aeron:udp\\?endpoint=[0-9.]+:(\\d+)\\|.*dtrain-auth=.*", Duration.ofSeconds(60));
                // The world ring's stream into a rank is base + its rank; its port is in the sender's channel.
                portByStream.put(0x1000 + Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)));
            }
            List<byte[]> ours = awaitCaptures(captureB, 60);
            List<byte[]> earlierRun = awaitCaptures(captureA, 60);
            java.util.SplittableRandom random = new java.util.SplittableRandom(42);
            int sent = 0;
            try (java.net.DatagramSocket attacker = new java.net.DatagramSocket()) {
                for (int i = 0; i < 40; i++) {
                    byte[] garbage = new byte[1 + random.nextInt(1500)];
                    random.nextBytes(garbage);
                    sent += send(attacker, garbage, portByStream.get(0x1000 + i % 2));
                    byte[] original = ours.get(random.nextInt(ours.size()));
                    int port = portByStream.get(streamId(original));
                    sent += send(attacker, java.util.Arrays.copyOf(original, 1 + random.nextInt(original.length - 1)), port);
                    byte[] flipped = original.clone();
                    int bit = random.nextInt(flipped.length * 8);
                    flipped[bit / 8] ^= (byte) (1 << (bit % 8));
                    sent += send(attacker, flipped, port);
                    sent += send(attacker, original, port); // verbatim, from this run: a replay
                    byte[] old = earlierRun.get(random.nextInt(earlierRun.size()));
                    sent += send(attacker, old, portByStream.get(streamId(old))); // the same job's earlier run
                }
            }
            Thread.sleep(1500); // the workers' drop watch reads the driver's counters once a second
            Files.createFile(stop);
            List<Workers.Result> results = disturbed.await(Duration.ofSeconds(60));
            String driverLog = Files.readString(jobB.resolve("driver.log"));
            for (Workers.Result r : results) {
                assertEquals(0, r.exitCode(), r::toString);
                assertTrue(r.stdout().contains("OK"), r::toString);
                List<String> crcs = r.lines("CRC round ");
                assertTrue(crcs.size() >= 1, r::toString);
                for (String line : crcs) {
                    String[] words = line.split(" ");
                    assertEquals(expected.get(Integer.toString(Integer.parseInt(words[2]) % 35)), words[3], line);
                }
                assertEquals("DROPPED " + sent, r.lines("DROPPED").get(0), "every datagram sent was dropped, no other");
            }
            assertTrue(results.stream().anyMatch(r -> r.stderr().contains("udp datagrams that failed authentication")),
                    results.get(0)::toString);
            assertTrue(driverLog.contains("dropped a udp datagram"), driverLog);
            assertTrue(driverLog.lines().filter(l -> l.contains("dropped a udp datagram")).count() <= 3,
                    "rate-limited: " + driverLog);
        } finally {
            if (disturbed != null) {
                disturbed.kill();
            }
            Workers.cleanUp(jobA, jobA.resolve("aeron"));
            Workers.cleanUp(jobB, jobB.resolve("aeron"));
            Workers.cleanUp(captureA);
            Workers.cleanUp(captureB);
        }
    }

    /** The data datagrams the driver captured in {@code dir}, once there are at least {@code count}. */
    private static List<byte[]> awaitCaptures(Path dir, int count) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            List<Path> files;
            try (var listing = Files.list(dir)) {
                files = listing.sorted().toList();
            }
            if (files.size() >= count) {
                List<byte[]> datagrams = new ArrayList<>();
                for (Path f : files) {
                    datagrams.add(Files.readAllBytes(f));
                }
                return datagrams;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("only " + files.size() + " datagrams captured in " + dir);
            }
            Thread.sleep(50);
        }
    }

    /** The stream id of an Aeron data frame (little-endian at byte 16). */
    private static int streamId(byte[] datagram) {
        return java.nio.ByteBuffer.wrap(datagram).order(java.nio.ByteOrder.LITTLE_ENDIAN).getInt(16);
    }

    private static int send(java.net.DatagramSocket socket, byte[] datagram, int port) throws IOException {
        socket.send(new java.net.DatagramPacket(datagram, datagram.length, java.net.InetAddress.getLoopbackAddress(), port));
        return 1;
    }

    private static void assertAllOkAndIdentical(List<Workers.Result> results) {
        List<String> reference = results.get(0).lines("CRC");
        assertEquals(3, reference.size(), results.get(0)::toString);
        for (Workers.Result r : results) {
            assertEquals(0, r.exitCode(), r::toString);
            assertTrue(r.stdout().contains("OK"), r::toString);
            assertEquals(reference, r.lines("CRC"), "rank " + r.rank());
        }
    }

    private static void check(int exitCode) {
        assertEquals(0, exitCode, "ip command failed");
    }

    private static int run(String... command) {
        try {
            Process p = new ProcessBuilder(new ArrayList<>(List.of(command))).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                return -1;
            }
            return p.exitValue();
        } catch (IOException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }
}
