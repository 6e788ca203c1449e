package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static io.dtrain.launcher.DpRuns.assertClose;
import static io.dtrain.launcher.DpRuns.finalParams;
import static io.dtrain.launcher.DpRuns.microOverrides;
import static io.dtrain.launcher.DpRuns.steps;
import static io.dtrain.launcher.DpRuns.summary;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Synchronous data parallelism over real worker processes equals one process training on the same global batch
 * (gpt-micro, float64, dropout 0.1): per-step losses, final evaluation and final parameters within 1e-9 relative;
 * each rank trained on exactly its 1/N of every global batch; the gradient AllReduce moved the gradient buffer once
 * (n-1)/n times per step and rank (one host: the gradients in shared memory, reduced in place; so "every rank computes everything" cannot pass); and the same job started again, this time
 * directly with torchrun-style environment variables instead of {@code dtrain launch}, repeats it bit for bit.
 */
class DpEquivalenceTest {
    static final int STEPS = 4;
    @TempDir
    static Path tmp;

    static Path oneRank8;
    static Path twoRanks;
    static Path oneRank12;
    static Path threeRanks;
    static List<String> setsOne8;
    static List<String> setsTwo;
    static List<String> setsOne12;
    static List<String> setsThree;

    @BeforeAll
    static void train() {
        oneRank8 = tmp.resolve("one-8");
        twoRanks = tmp.resolve("two-8");
        oneRank12 = tmp.resolve("one-12");
        threeRanks = tmp.resolve("three-12");
        setsOne8 = microOverrides(oneRank8, 8, STEPS);
        setsTwo = microOverrides(twoRanks, 8, STEPS);
        setsOne12 = microOverrides(oneRank12, 12, STEPS);
        setsThree = microOverrides(threeRanks, 12, STEPS);
        Cli one8 = Cli.run(trainArgs(setsOne8).toArray(String[]::new));
        assertEquals(0, one8.exitCode(), one8.toString());
        Cli one12 = Cli.run(trainArgs(setsOne12).toArray(String[]::new));
        assertEquals(0, one12.exitCode(), one12.toString());
        launch(2, setsTwo);
        launch(3, setsThree);
    }

    static Cli launch(int ranks, List<String> sets) {
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", Integer.toString(ranks),
                "--memory-per-worker", "1g", "--stop-grace", "2", "--"));
        args.addAll(trainArgs(sets));
        Cli cli = Cli.run(args.toArray(String[]::new));
        assertEquals(0, cli.exitCode(), cli.toString());
        assertTrue(cli.out().contains("[rank 0] done: " + STEPS + " steps"), cli.out());
        return cli;
    }

    @Test
    void twoRanksEqualOneRankOnTheSameGlobalBatch() {
        assertEquivalent(oneRank8, setsOne8, twoRanks, setsTwo, 2);
    }

    @Test
    void threeRanksEqualOneRankOnTheSameGlobalBatch() {
        assertEquivalent(oneRank12, setsOne12, threeRanks, setsThree, 3);
    }

    static void assertEquivalent(Path oneDir, List<String> oneSets, Path dpDir, List<String> dpSets, int n) {
        List<JsonNode> one = steps(oneDir, 0);
        assertEquals(STEPS, one.size());
        for (int r = 0; r < n; r++) {
            List<JsonNode> dp = steps(dpDir, r);
            assertEquals(STEPS, dp.size(), "steps recorded by rank " + r);
            for (int i = 0; i < STEPS; i++) {
                assertClose(one.get(i).get("loss").asDouble(), dp.get(i).get("loss").asDouble(), 1e-9,
                        "loss of step " + (i + 1) + " on rank " + r + " of " + n);
                assertClose(one.get(i).get("grad_norm").asDouble(), dp.get(i).get("grad_norm").asDouble(), 1e-9,
                        "gradient norm of step " + (i + 1) + " on rank " + r + " of " + n);
            }
        }
        assertTrue(one.get(0).get("loss").asDouble() != one.get(STEPS - 1).get("loss").asDouble(), "the model trains");

        JsonNode oneSummary = summary(oneDir, 0);
        assertClose(oneSummary.get("last_val_loss").asDouble(), summary(dpDir, 0).get("last_val_loss").asDouble(),
                1e-9, "final validation loss (3 batches sharded over " + n + " ranks, token-weighted)");

        long oneSamples = oneSummary.get("samples").asLong();
        long digestSum = 0;
        for (int r = 0; r < n; r++) {
            JsonNode s = summary(dpDir, r);
            assertEquals(oneSamples / n, s.get("samples").asLong(), "rank " + r + " trains on 1/" + n + " of the samples");
            digestSum += Long.parseUnsignedLong(s.get("sample_digest").asText(), 16);
            long buffer = s.get("gradient_buffer_bytes").asLong();
            // One host: the gradients are the group's shared buffer, reduced in place, where each rank writes its
            // 1/n of the result into the n-1 others' buffers (the copying exchange: its whole buffer once for the
            // others; a ring would send 2(n-1)/n of it).
            boolean shared = s.get("gradients_in_shared_memory").asBoolean();
            assertEquals(io.dtrain.train.dp.SharedGradients.ON_BY_DEFAULT, shared, "rank " + r + ": gradients in shared memory");
            double expected = (double) buffer * STEPS * (shared ? (n - 1.0) / n : 1.0);
            double sent = s.get("gradient_allreduce_bytes_sent").asLong();
            assertTrue(sent > expected * (shared ? 0.98 : 0.9999) && sent < expected * 1.02, "rank " + r + " sent " + sent
                    + " bytes averaging gradients, expected about " + buffer + " x " + STEPS
                    + (shared ? " x " + (n - 1) + "/" + n : "") + " = " + expected);
        }
        assertEquals(Long.parseUnsignedLong(oneSummary.get("sample_digest").asText(), 16), digestSum,
                "together the ranks trained on exactly the one-rank run's (step, sample) pairs");

        DpRuns.assertSameFinalParams(oneDir, oneSets, dpDir, dpSets);
    }

    /** The same two-rank job, started by hand as a Slurm or Kubernetes wrapper would, repeats the launched run exactly. */
    @Test
    void rerunStartedDirectlyFromTheEnvironmentIsBitIdentical() throws Exception {
        Path again = tmp.resolve("two-8-again");
        List<String> sets = microOverrides(again, 8, STEPS);
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        List<Process> workers = new ArrayList<>();
        List<File> logs = new ArrayList<>();
        for (int rank = 0; rank < 2; rank++) {
            List<String> cmd = new ArrayList<>();
            cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            cmd.addAll(io.dtrain.parallel.spawn.WorkerJvm.projectOptions());
            cmd.addAll(List.of("-Xmx512m", "-cp", System.getProperty("java.class.path"), Main.class.getName()));
            cmd.addAll(trainArgs(sets));
            File log = tmp.resolve("direct-rank" + rank + ".log").toFile();
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log);
            pb.environment().put("RANK", Integer.toString(rank));
            pb.environment().put("WORLD_SIZE", "2");
            pb.environment().put("MASTER_ADDR", "127.0.0.1");
            pb.environment().put("MASTER_PORT", Integer.toString(port));
            pb.environment().put("DTRAIN_JOB_ID", "dp-direct-" + port);
            pb.environment().put("DTRAIN_JOB_SECRET", "not-so-secret-" + port);
            pb.environment().put("OMP_NUM_THREADS", "1");
            workers.add(pb.start());
            logs.add(log);
        }
        for (int rank = 0; rank < 2; rank++) {
            Process p = workers.get(rank);
            if (!p.waitFor(180, TimeUnit.SECONDS)) {
                workers.forEach(Process::destroyForcibly);
                throw new AssertionError("rank " + rank + " did not finish:\n" + Files.readString(logs.get(rank).toPath()));
            }
            assertEquals(0, p.exitValue(), "rank " + rank + ":\n" + Files.readString(logs.get(rank).toPath()));
        }
        for (int r = 0; r < 2; r++) {
            List<JsonNode> first = steps(twoRanks, r);
            List<JsonNode> second = steps(again, r);
            for (int i = 0; i < STEPS; i++) {
                assertEquals(first.get(i).get("loss").asDouble(), second.get(i).get("loss").asDouble(), 0.0,
                        "loss of step " + (i + 1) + " on rank " + r);
            }
            assertEquals(summary(twoRanks, r).get("sample_digest").asText(), summary(again, r).get("sample_digest").asText());
        }
        assertArrayEquals(finalParams(twoRanks, setsTwo), finalParams(again, sets), 0.0, "final parameters, bit for bit");
    }
}
