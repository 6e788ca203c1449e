package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** Collectives across real worker processes sharing one media driver process. */
class CollectivesProcessTest {
    @RegisterExtension
    static final JobDirectory JOB = new JobDirectory();

    @ParameterizedTest(name = "world {0}")
    @ValueSource(ints = {1, 2, 3, 4, 5})
    void allCollectivesAreCorrectAndBitIdenticalAcrossRanks(int world) {
        List<String> crcs = runCorrectness(world, "auto", true);
        if (world > 1) {
            // Over shared memory no driver ran, and the last worker removed the (then empty) job directory; its mode
            // when made is WorldConfigTest's.
            assertTrue(!Files.exists(JOB.jobDir())
                    || PosixFilePermissions.toString(uncheckedPermissions(JOB.jobDir())).equals("rwx------"), "job dir mode");
            assertFalse(Files.exists(JOB.jobDir().resolve("shm")), "shared-memory link files are unlinked once both ends map"
                    + " them, and their directory goes with the last worker");
        }
        if (world == 3) {
            // The ring's reduction order is the ring's, not the transport's: shared-memory and Aeron ipc links give the
            // same bits (no shared-memory exchange: DTRAIN_SHM_ALLREDUCE_MAX_BYTES=0).
            assertEquals(runCorrectness(world, "shm", false), runCorrectness(world, "ipc", false), "CRCs over shm vs over Aeron ipc");
        }
    }

    /** Runs the correctness scenario and checks it; returns rank 0's checksums of the world's collectives. */
    private static List<String> runCorrectness(int world, String transport, boolean exchange) {
        Map<String, String> env = Workers.jobEnv(world, JOB.aeronDir(), Duration.ofSeconds(20));
        env.put("DTRAIN_TRANSPORT", transport);
        if (!exchange) {
            env.put("DTRAIN_SHM_ALLREDUCE_MAX_BYTES", "0");
        }
        if (world % 2 == 1) {
            env.put("DTRAIN_FRAME_PAYLOAD_BYTES", "1000"); // many frames per segment, frame sizes not a multiple of 8
        }
        List<Workers.Result> results = Workers.run(world, "correctness", env, rank -> List.of(), Duration.ofSeconds(90));
        for (Workers.Result r : results) {
            assertEquals(0, r.exitCode(), r::toString);
            assertTrue(r.stdout().contains("OK"), r::toString);
        }
        // Every rank printed the same checksums for the same collectives.
        List<String> reference = results.get(0).lines("CRC");
        assertEquals(2 * 7 * 2 + 2 + (world >= 3 ? 1 : 0), reference.size(), results.get(0)::toString);
        List<String> worldCrcs = reference.stream().filter(l -> !l.startsWith("CRC subgroup")).toList();
        for (Workers.Result r : results) {
            List<String> crcs = r.lines("CRC").stream().filter(l -> !l.startsWith("CRC subgroup")).toList();
            assertEquals(worldCrcs, crcs, "rank " + r.rank());
        }
        // A ring AllReduce sends 2(n-1)/n of the buffer per rank (plus 48-byte frame headers); through the
        // shared-memory exchange (every member on one host) a rank writes its buffer and its segment's result once.
        for (Workers.Result r : results) {
            String[] bytes = r.lines("BYTES").get(0).split(" ");
            double sent = Long.parseLong(bytes[1]);
            double buffer = Long.parseLong(bytes[2]);
            double ideal = 2.0 * (world - 1) / world * buffer;
            if (exchange && world > 1 && !transport.equals("ipc")) {
                assertEquals(Long.parseLong(bytes[3]), (long) sent, "rank " + r.rank() + " wrote to the exchange");
            } else {
                assertTrue(sent >= ideal && sent <= ideal * 1.06 + 1000,
                        "rank " + r.rank() + " sent " + sent + " bytes, ideal " + ideal);
            }
        }
        // Only Aeron links (ipc here) need the host's media driver; shared-memory links run without one.
        assertTrue(Files.isDirectory(JOB.aeronDir()) || world == 1 || !transport.equals("ipc"),
                () -> "driver directory " + JOB.aeronDir() + " is gone: " + results.get(0).stderr());
        return worldCrcs;
    }

    /**
     * The shared-memory exchange around its thresholds (see {@code CollectiveWorker#exchange}), at worlds 2, 3 and 4:
     * every rank the same bits, the ring above DTRAIN_SHM_ALLREDUCE_MAX_BYTES.
     */
    @ParameterizedTest(name = "world {0}")
    @ValueSource(ints = {2, 3, 4})
    void theSharedMemoryExchangeIsCorrectAndBitIdenticalAcrossRanksAroundItsThresholds(int world) {
        long threshold = 3 * ShmExchange.SLOT_BYTES + 4;
        Map<String, String> env = Workers.jobEnv(world, JOB.aeronDir(), Duration.ofSeconds(20));
        env.put("DTRAIN_SHM_ALLREDUCE_MAX_BYTES", Long.toString(threshold));
        List<Workers.Result> results = Workers.run(world, "exchange", env, rank -> List.of("-Xmx512m"), Duration.ofSeconds(120));
        for (Workers.Result r : results) {
            assertEquals(0, r.exitCode(), r::toString);
            assertTrue(r.stdout().contains("OK"), r::toString);
            assertEquals(results.get(0).lines("CRC"), r.lines("CRC"), "rank " + r.rank());
            for (String algo : r.lines("ALGO")) {
                String[] words = algo.split(" ");
                long bytes = Long.parseLong(words[2]) * ElementType.valueOf(words[1]).bytes();
                assertEquals(bytes <= threshold ? "exchange" : "ring", words[3], algo);
            }
        }
        assertEquals(2 * 2 * 15, results.get(0).lines("CRC").size(), results.get(0)::toString);
    }

    /**
     * Buffers from allocateBuffer (shared memory, reduced in place; see {@code CollectiveWorker#shared}) at worlds 2, 3
     * and 4: correct, every rank the same bits, the same bits as the copying exchange, at every size.
     */
    @ParameterizedTest(name = "world {0}")
    @ValueSource(ints = {2, 3, 4})
    void sharedBuffersAreReducedInPlaceCorrectlyWithTheSameBitsOnEveryRank(int world) {
        long threshold = 3 * ShmExchange.SLOT_BYTES + 4;
        Map<String, String> env = Workers.jobEnv(world, JOB.aeronDir(), Duration.ofSeconds(20));
        env.put("DTRAIN_SHM_ALLREDUCE_MAX_BYTES", Long.toString(threshold));
        List<Workers.Result> results = Workers.run(world, "shared", env, rank -> List.of("-Xmx512m"), Duration.ofSeconds(120));
        for (Workers.Result r : results) {
            assertEquals(0, r.exitCode(), r::toString);
            assertTrue(r.stdout().contains("OK"), r::toString);
            assertEquals(results.get(0).lines("CRC"), r.lines("CRC"), "rank " + r.rank());
        }
        assertEquals(2 * 2 * 13, results.get(0).lines("CRC").size(), results.get(0)::toString);
    }

    /**
     * Rank 1 passes an ordinary buffer where the others pass a shared one: below the threshold and above it (up to
     * the direct algorithm's 16 KiB both kinds go through the slots alike, so nothing differs there).
     */
    @ParameterizedTest(name = "{0} floats")
    @ValueSource(ints = {8000, 300_000})
    void aPeerPassingAnOrdinaryBufferWhereTheOthersPassASharedOneFailsEveryRankNamingIt(int length) {
        int world = 3;
        Duration timeout = Duration.ofSeconds(4);
        Map<String, String> env = Workers.jobEnv(world, JOB.aeronDir(), timeout);
        env.put("DTRAIN_SHM_ALLREDUCE_MAX_BYTES", "64KiB");
        List<Workers.Result> results = Workers.run(world, "shared-mismatch", env, rank -> List.of("-Dlength=" + length),
                Duration.ofSeconds(60));
        for (Workers.Result r : results) {
            String failure = r.failure();
            assertNotNull(failure, r::toString);
            System.out.println("rank " + r.rank() + ": " + failure);
            assertEquals(3, r.exitCode(), r::toString);
            assertTrue(failure.contains("mismatched buffers"), failure);
            assertTrue(failure.contains("allReduce 'grads' #1"), failure);
            long ms = Long.parseLong(failure.replaceAll("FAILED after (\\d+) ms.*", "$1"));
            assertTrue(ms <= timeout.toMillis() + 2000, "failed only after " + ms + " ms: " + failure);
        }
    }

    @ParameterizedTest(name = "shared buffer {0}, transport {1}")
    @CsvSource({"false, auto", "true, auto", "false, ipc"})
    void aPeerKilledInTheMiddleOfAnAllReduceFailsEveryOtherRankWithinTheTimeout(boolean shared, String transport) {
        int world = 4;
        Duration timeout = Duration.ofSeconds(4);
        Map<String, String> env = Workers.jobEnv(world, JOB.aeronDir(), timeout);
        env.put("DTRAIN_TRANSPORT", transport);
        env.put("DTRAIN_FRAME_PAYLOAD_BYTES", "4096");
        List<Workers.Result> results = Workers.run(world, "kill", env,
                rank -> rank == 2 ? List.of("-Ddtrain.test.killAfterFrames=100", "-Dshared=" + shared) : List.of("-Dshared=" + shared),
                Duration.ofSeconds(60));
        Workers.Result killed = results.get(2);
        assertEquals(137, killed.exitCode(), killed::toString);
        assertTrue(killed.stderr().contains("killing rank 2"), killed::toString);
        for (Workers.Result r : results) {
            if (r.rank() == 2) {
                continue;
            }
            String failure = r.failure();
            assertNotNull(failure, r::toString);
            System.out.println("rank " + r.rank() + ": " + failure);
            assertTrue(failure.matches(".*allReduce 'step' #\\d+ .*"), failure);
            assertTrue(failure.contains("rank 2"), failure);
            long ms = Long.parseLong(failure.replaceAll("FAILED after (\\d+) ms.*", "$1"));
            assertTrue(ms <= timeout.toMillis() + 2000, "failed only after " + ms + " ms: " + failure);
            assertTrue(r.threadDump().startsWith("dtrain thread dump of rank " + r.rank()), r::toString);
            assertTrue(!r.stderr().contains("dtrain thread dump"), "the dump goes to its file, not the console");
        }
        if (transport.equals("ipc")) {
            // The media driver (which Aeron links need) is its own process: a worker's death does not take it down.
            assertTrue(io.dtrain.parallel.transport.MediaDriverProcess.pid(JOB.aeronDir()).stream()
                    .anyMatch(pid -> ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)), "driver died");
        }
    }

    @Test
    void aPeerCallingADifferentCollectiveFailsEveryRankNamingIt() {
        int world = 3;
        Duration timeout = Duration.ofSeconds(4);
        List<Workers.Result> results = Workers.run(world, "mismatch", Workers.jobEnv(world, JOB.aeronDir(), timeout),
                rank -> List.of(), Duration.ofSeconds(60));
        Set<String> failures = new HashSet<>();
        for (Workers.Result r : results) {
            String failure = r.failure();
            assertNotNull(failure, r::toString);
            System.out.println("rank " + r.rank() + ": " + failure);
            assertEquals(3, r.exitCode(), r::toString);
            assertTrue(failure.contains("#2"), failure);
            assertTrue(failure.contains("allGather") && failure.contains("allReduce"), failure);
            assertTrue(failure.contains("rank 1"), failure);
            long ms = Long.parseLong(failure.replaceAll("FAILED after (\\d+) ms.*", "$1"));
            assertTrue(ms <= timeout.toMillis() + 2000, "failed only after " + ms + " ms: " + failure);
            failures.add(failure);
        }
    }

    @Test
    void aStalledPeerFailsTheOthersByTheTimeoutNamingIt() {
        int world = 3;
        Duration timeout = Duration.ofSeconds(3);
        List<Workers.Result> results = Workers.run(world, "stall", Workers.jobEnv(world, JOB.aeronDir(), timeout),
                rank -> List.of("-Dstall.ms=6000"), Duration.ofSeconds(60));
        for (Workers.Result r : results) {
            String failure = r.failure();
            assertNotNull(failure, r::toString);
            System.out.println("rank " + r.rank() + ": " + failure);
            assertTrue(failure.contains("allReduce 'grads' #1"), failure);
            assertTrue(failure.contains("rank 2"), failure);
            if (r.rank() != 2) {
                long ms = Long.parseLong(failure.replaceAll("FAILED after (\\d+) ms.*", "$1"));
                assertTrue(ms >= timeout.toMillis() - 100 && ms <= timeout.toMillis() + 3000, "failed after " + ms + " ms: " + failure);
                assertTrue(failure.startsWith("FAILED after " + ms + " ms: rank 2 stopped making progress"), failure);
                assertTrue(r.threadDump().startsWith("dtrain thread dump of rank " + r.rank()), r::toString);
            }
        }
    }

    @Test
    void intrudersWithAWrongOrNoSecretOrATakenRankAreRefusedAndTheJobIsUnaffected() throws Exception {
        Map<String, String> env = Workers.jobEnv(2, JOB.aeronDir(), Duration.ofSeconds(20));
        String secret = env.get("DTRAIN_JOB_SECRET");
        Path stop = JOB.jobDir().resolve("intruders-done");
        List<String> jvm = List.of("-Dstop.file=" + stop);
        Workers.Running job = Workers.startJob(2, "steady", env, rank -> jvm);
        try {
            job.awaitLine(1, "JOINED", Duration.ofSeconds(60));
            Map<String, String> wrongSecret = new java.util.HashMap<>(env);
            wrongSecret.put("DTRAIN_JOB_SECRET", secret + "-wrong");
            Map<String, String> noSecret = new java.util.HashMap<>(env);
            noSecret.remove("DTRAIN_JOB_SECRET");
            // A stale worker restarted by hand: the right secret, a rank that is taken.
            Map<String, String> duplicate = new java.util.HashMap<>(env);
            Map<String, Map<String, String>> intruders = new java.util.LinkedHashMap<>();
            intruders.put("wrong job secret", wrongSecret);
            intruders.put("no job secret", noSecret);
            intruders.put("rank 1 is already taken", duplicate);
            for (Map.Entry<String, Map<String, String>> intruder : intruders.entrySet()) {
                Workers.Result r = Workers.runOne(1, "steady", intruder.getValue(), jvm, Duration.ofSeconds(60));
                assertEquals(2, r.exitCode(), r::toString);
                List<String> lines = r.stderr().lines().filter(l -> !l.contains(" INFO ") && !l.startsWith("WARNING: Using incubator")).toList();
                assertEquals(1, lines.size(), "one line: " + r);
                assertTrue(lines.get(0).startsWith("error: ") && lines.get(0).contains(
                        intruder.getKey().equals("wrong job secret") ? "wrong job id or secret" : intruder.getKey()), r::toString);
                assertFalse(r.stderr().contains(secret), "secret in an intruder's output");
            }
            Files.createFile(stop);
            List<Workers.Result> results = job.await(Duration.ofSeconds(60));
            for (Workers.Result r : results) {
                assertEquals(0, r.exitCode(), r::toString);
                assertTrue(r.stdout().contains("OK"), r::toString);
                assertFalse(r.stderr().contains(secret), "secret in a worker's log");
            }
            assertEquals(results.get(0).lines("CRC"), results.get(1).lines("CRC"));
            assertTrue(results.get(0).stderr().contains("wrong job secret")
                    && results.get(0).stderr().contains("rank 1 is already taken"), "the store (rank 0) logs refusals: "
                    + results.get(0));
        } finally {
            job.kill();
        }
    }

    private static Set<java.nio.file.attribute.PosixFilePermission> uncheckedPermissions(Path path) {
        try {
            return Files.getPosixFilePermissions(path);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
