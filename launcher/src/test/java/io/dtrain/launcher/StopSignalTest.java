package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import io.dtrain.parallel.spawn.WorkerJvm;
import io.dtrain.train.StopSignals;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static io.dtrain.launcher.DpRuns.steps;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A job a scheduler stops with SIGTERM (to the launcher, or to one worker only) checkpoints at one step on every rank
 * and exits 75; the same command line run again continues it exactly: the losses of every step, float64, equal an
 * uninterrupted run's.
 */
class StopSignalTest {
    static final int STEPS = 150;
    static Path reference;
    static List<String> referenceSets;

    @BeforeAll
    static void uninterrupted(@TempDir Path tmp) throws Exception {
        reference = tmp.resolve("reference");
        referenceSets = DpRuns.microOverrides(reference, 4, STEPS);
        Process p = launcher(referenceSets).start();
        assertTrue(p.waitFor(300, TimeUnit.SECONDS), "the uninterrupted run finishes");
        assertEquals(0, p.exitValue(), output(p));
    }

    /** "dtrain launch --nproc-per-node 2 -- train ... --resume auto" as its own process (signals go to its pid). */
    static ProcessBuilder launcher(List<String> sets) {
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "2", "--memory-per-worker", "1g",
                "--stop-grace", "2", "--"));
        args.addAll(trainArgs(sets, "--resume", "auto"));
        return WorkerJvm.of(Main.class).jvmOptions(List.of("-Xmx512m")).args(args).processBuilder(0, 0)
                .directory(DpRuns.REPO.toFile()).redirectErrorStream(true);
    }

    static String output(Process p) throws IOException {
        return new String(p.getInputStream().readAllBytes());
    }

    /** Waits until rank 0 has recorded at least {@code n} steps. */
    static void awaitSteps(Path runDir, int n) throws Exception {
        Path file = runDir.resolve("metrics/steps-rank0.jsonl");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (System.nanoTime() < deadline) {
            if (Files.exists(file) && Files.readAllLines(file).size() >= n) {
                return;
            }
            Thread.sleep(10);
        }
        throw new AssertionError("no " + n + " steps recorded in " + file);
    }

    @Test
    void sigtermToTheLauncherCheckpointsAndTheSameCommandContinuesExactly(@TempDir Path tmp) throws Exception {
        assertStopAndContinue(tmp.resolve("run"), p -> p.pid());
    }

    @Test
    void sigtermToOneWorkerStopsEveryRankAtTheSameStep(@TempDir Path tmp) throws Exception {
        // rank 1 is a child of the launcher (its command line carries -Ddtrain.rank=1): signal it alone
        assertStopAndContinue(tmp.resolve("run"), p -> p.descendants().filter(c -> c.info().commandLine()
                .orElse("").contains("-Ddtrain.rank=1 ")).findFirst()
                .orElseThrow(() -> new AssertionError("no worker of rank 1 under the launcher")).pid());
    }

    interface Target {
        long pid(Process launcher);
    }

    static void assertStopAndContinue(Path run, Target target) throws Exception {
        List<String> sets = DpRuns.microOverrides(run, 4, STEPS);
        Process first = launcher(sets).start();
        StringBuilder firstOut = new StringBuilder();
        Thread pump = new Thread(() -> {
            try {
                firstOut.append(output(first));
            } catch (IOException e) {
                firstOut.append(e);
            }
        });
        pump.start();
        awaitSteps(run, 3);
        new ProcessBuilder("kill", "-TERM", Long.toString(target.pid(first))).inheritIO().start().waitFor();
        assertTrue(first.waitFor(120, TimeUnit.SECONDS), "the stopped run exits");
        pump.join(5_000);
        assertEquals(StopSignals.EXIT_REQUEUE, first.exitValue(), firstOut.toString());
        int stoppedAt = steps(run, 0).size();
        assertTrue(stoppedAt < STEPS, "stopped before the end, at step " + stoppedAt);
        assertEquals(stoppedAt, steps(run, 1).size(), "both ranks stopped at the same step");
        assertTrue(firstOut.toString().contains("stop: checkpoint of step " + stoppedAt), firstOut.toString());

        Process again = launcher(sets).start();
        String againOut = output(again);
        assertTrue(again.waitFor(300, TimeUnit.SECONDS));
        assertEquals(0, again.exitValue(), againOut);
        assertTrue(againOut.contains("resume auto: continuing from the latest checkpoint"), againOut);
        List<JsonNode> expected = steps(reference, 0);
        List<JsonNode> actual = steps(run, 0);
        assertEquals(STEPS, actual.size(), "steps recorded over both runs");
        for (int i = 0; i < STEPS; i++) {
            assertEquals(expected.get(i).get("loss").asDouble(), actual.get(i).get("loss").asDouble(), 0.0,
                    "loss of step " + (i + 1) + " (stopped after " + stoppedAt + ")");
        }
        DpRuns.assertSameFinalParams(reference, referenceSets, run, sets);
    }
}
