package io.dtrain.launcher;

import io.dtrain.parallel.spawn.WorkerJvm;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * dtrain launch --max-restarts K with real worker processes (gpt-micro, float64): a worker killed twice is restarted
 * twice with all the others from the latest complete checkpoint, and the final parameters equal an uninterrupted
 * run's; one failure more than K allow ends the job with one line naming it.
 */
class RestartTest {
    static final int STEPS = 120;
    static Path reference;
    static List<String> referenceSets;

    @BeforeAll
    static void uninterrupted(@TempDir Path tmp) throws Exception {
        reference = tmp.resolve("reference");
        referenceSets = DpRuns.microOverrides(reference, 4, STEPS, "training.checkpoint_interval=20");
        Launch p = Launch.start(referenceSets, 0);
        assertEquals(0, p.awaitExit(), p.output());
    }

    /** A running "dtrain launch --nproc-per-node 2 --max-restarts K -- train ..." and everything it printed. */
    record Launch(Process process, StringBuffer out, Thread pump) {
        static Launch start(List<String> sets, int maxRestarts, String... launchOptions) throws IOException {
            List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "2", "--memory-per-worker", "1g",
                    "--stop-grace", "2", "--max-restarts", Integer.toString(maxRestarts)));
            args.addAll(List.of(launchOptions));
            args.add("--");
            args.addAll(DpRuns.trainArgs(sets));
            return start(WorkerJvm.of(Main.class).jvmOptions(List.of("-Xmx512m")).args(args).processBuilder(0, 0)
                    .directory(DpRuns.REPO.toFile()).redirectErrorStream(true));
        }

        static Launch start(ProcessBuilder launcher) throws IOException {
            Process p = launcher.start();
            StringBuffer out = new StringBuffer();
            Thread pump = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String line; (line = r.readLine()) != null; ) {
                        out.append(line).append('\n');
                    }
                } catch (IOException e) {
                    out.append(e);
                }
            });
            pump.start();
            return new Launch(p, out, pump);
        }

        int awaitExit() throws InterruptedException {
            assertTrue(process.waitFor(300, TimeUnit.SECONDS), "the launcher exits");
            pump.join(5_000);
            return process.exitValue();
        }

        String output() {
            return out.toString();
        }

        /** Kills the worker of {@code rank} (a child of this launcher) with SIGKILL; returns its pid. */
        long kill(int rank) throws Exception {
            long pid = process.descendants().filter(c -> c.info().commandLine().orElse("")
                            .contains("-Ddtrain.rank=" + rank + " ")).findFirst()
                    .orElseThrow(() -> new AssertionError("no worker of rank " + rank + " under the launcher")).pid();
            new ProcessBuilder("kill", "-KILL", Long.toString(pid)).inheritIO().start().waitFor();
            return pid;
        }
    }

    static void await(Launch launch, String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what + "; the launcher printed:\n" + launch.output());
            }
            Thread.sleep(20);
        }
    }

    /** Step records rank 0 has written so far, over all rounds (the file is appended to on resume). */
    static int stepLines(Path run) {
        try {
            Path f = run.resolve("metrics/steps-rank0.jsonl");
            return Files.exists(f) ? Files.readAllLines(f).size() : 0;
        } catch (IOException e) {
            return 0;
        }
    }

    /** Waits until rank 0 has trained {@code more} steps beyond {@code from} lines, then kills rank 1. */
    static long killAfter(Launch launch, Path run, int from, int more) throws Exception {
        await(launch, (from + more) + " step records", () -> stepLines(run) >= from + more);
        return launch.kill(1);
    }

    @Test
    void aWorkerKilledTwiceIsRestartedTwiceAndTheResultEqualsAnUninterruptedRun(@TempDir Path tmp) throws Exception {
        Path run = tmp.resolve("run");
        List<String> sets = DpRuns.microOverrides(run, 4, STEPS, "training.checkpoint_interval=20");
        Launch launch = Launch.start(sets, 2);
        long first = killAfter(launch, run, 0, 30);
        await(launch, "restart round 1", () -> launch.output().contains("launch: restart round 1: starting the workers again"));
        long second = killAfter(launch, run, stepLines(run), 15);
        assertEquals(0, launch.awaitExit(), launch.output());
        String out = launch.output();
        out.lines().filter(l -> l.startsWith("launch: restart")).forEach(System.out::println);
        assertTrue(out.contains("launch: restart 1 of 2: rank 1 (node 0, local rank 1, pid " + first
                + ") was killed by SIGKILL: out of memory, or killed from outside? (exit code 137)"), out);
        assertTrue(out.contains("launch: restart 2 of 2: rank 1 (node 0, local rank 1, pid " + second
                + ") was killed by SIGKILL: out of memory, or killed from outside? (exit code 137)"), out);
        assertTrue(out.contains("launch: restart round 2: starting the workers again"), out);
        assertTrue(out.contains("resume auto: continuing from the latest checkpoint"), out);
        DpRuns.assertSameFinalParams(reference, referenceSets, run, sets);
    }

    @Test
    void aWorkerDyingOnNode1RestartsBothNodes(@TempDir Path tmp) throws Exception {
        Path run = tmp.resolve("run");
        List<String> sets = DpRuns.microOverrides(run, 4, STEPS, "training.checkpoint_interval=20");
        Path secret = BringUpErrorsTest.secret(tmp);
        int port = BringUpErrorsTest.freePort();
        List<String> restarts = List.of("--max-restarts", "1");
        Launch node0 = Launch.start(BringUpErrorsTest.node(DpRuns.REPO, 2, 0, port, secret, restarts, sets));
        Launch node1 = Launch.start(BringUpErrorsTest.node(DpRuns.REPO, 2, 1, port, secret, restarts, sets));
        long killed = killAfter(node1, run, 0, 30);
        assertEquals(0, node1.awaitExit(), node1.output());
        assertEquals(0, node0.awaitExit(), node0.output());
        String cause = "launch: restart 1 of 1: rank 1 (node 1, local rank 0, pid " + killed + ") was killed by SIGKILL";
        assertTrue(node0.output().contains(cause), node0.output());
        assertTrue(node1.output().contains(cause), node1.output());
        assertTrue(node0.output().contains("launch: restart round 1: starting the workers again"), node0.output());
        DpRuns.assertSameFinalParams(reference, referenceSets, run, sets);
    }

    @Test
    void oneFailureMoreThanMaxRestartsAllowEndsTheJobWithOneLine(@TempDir Path tmp) throws Exception {
        Path run = tmp.resolve("run");
        List<String> sets = DpRuns.microOverrides(run, 4, STEPS, "training.checkpoint_interval=20");
        Launch launch = Launch.start(sets, 1);
        killAfter(launch, run, 0, 10);
        await(launch, "restart round 1", () -> launch.output().contains("launch: restart round 1: starting the workers again"));
        long second = killAfter(launch, run, stepLines(run), 5);
        assertEquals(1, launch.awaitExit(), launch.output());
        assertTrue(launch.output().contains("dtrain launch: error: rank 1 (node 0, local rank 1, pid " + second
                + ") was killed by SIGKILL: out of memory, or killed from outside? (exit code 137); the job gave up after 1 restart(s) (--max-restarts 1) with"
                + " exit code 137\n"), launch.output());
    }
}
