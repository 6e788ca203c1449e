package io.dtrain.launcher;

import io.dtrain.checkpoint.Checkpoint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static io.dtrain.launcher.DpRuns.microOverrides;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What {@code dtrain launch} does when workers fail, and the errors of its options. */
class DpFailureTest {

    static List<String> launchArgs(int ranks, List<String> workerArgs) {
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", Integer.toString(ranks),
                "--memory-per-worker", "1g", "--stop-grace", "2", "--"));
        args.addAll(workerArgs);
        return args;
    }

    /**
     * SIGKILL of rank 1 mid-run: the launcher stops rank 0 and exits non-zero within seconds, naming rank 1 and
     * the signal; the last checkpoint rank 0 committed is intact, and a new launch resumes from it.
     */
    @Test
    void killedWorkerStopsTheJobAndTheLastCheckpointResumes(@TempDir Path tmp) throws Exception {
        Path run = tmp.resolve("run");
        List<String> sets = microOverrides(run, 8, 400, "training.checkpoint_interval=2", "output.keep_checkpoints=2");
        CompletableFuture<Cli> launched = CompletableFuture.supplyAsync(
                () -> Cli.run(launchArgs(2, trainArgs(sets)).toArray(String[]::new)));
        ProcessHandle rank1 = null;
        long killedAt = 0;
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (latestStep(run) < 4) {
                assertTrue(System.nanoTime() < deadline && !launched.isDone(),
                        "no checkpoint of step 4 within 120 s" + (launched.isDone() ? ":\n" + launched.get() : ""));
                Thread.sleep(100);
            }
            rank1 = workers().stream().filter(p -> commandLine(p).contains("-Ddtrain.rank=1")).findFirst()
                    .orElseThrow(() -> new AssertionError("no worker process with -Ddtrain.rank=1"));
            killedAt = System.nanoTime();
            assertTrue(rank1.destroyForcibly(), "SIGKILL rank 1");
        } finally {
            if (killedAt == 0) {
                // a failed assertion above: do not leave a 400-step job running behind the next test
                workers().forEach(ProcessHandle::destroyForcibly);
            }
        }
        Cli cli = launched.get(60, TimeUnit.SECONDS);
        double seconds = (System.nanoTime() - killedAt) / 1e9;
        assertNotEquals(0, cli.exitCode(), cli.toString());
        assertTrue(seconds < 20, "the launcher took " + seconds + " s to give up after the kill");
        assertTrue(cli.err().contains("rank 1 (local rank 1, pid " + rank1.pid() + ") failed with exit code 137 (killed by SIGKILL"),
                cli.err());
        assertTrue(cli.err().contains("Last lines of rank 1's output"), cli.err());
        assertTrue(workers().isEmpty(), "no worker outlives the launcher");

        Checkpoint last = Checkpoint.load(run);
        last.verify();
        long resumeStep = last.step();
        assertTrue(resumeStep >= 4 && resumeStep < 400, "checkpoint step " + resumeStep);

        List<String> resumeSets = microOverrides(run, 8, 400, "training.checkpoint_interval=2",
                "output.keep_checkpoints=2", "training.steps=" + (resumeStep + 2));
        Cli resumed = Cli.run(launchArgs(2, trainArgs(resumeSets, "--resume")).toArray(String[]::new));
        assertEquals(0, resumed.exitCode(), resumed.toString());
        assertTrue(resumed.out().contains("[rank 0] resumed from ") && resumed.out().contains("at step " + resumeStep),
                resumed.out());
        assertEquals(resumeStep + 2, Checkpoint.load(run).step());
    }

    /** This JVM's live worker processes (their command lines name their rank). */
    static List<ProcessHandle> workers() {
        return ProcessHandle.current().descendants().filter(ProcessHandle::isAlive)
                .filter(p -> commandLine(p).contains("-Ddtrain.rank=")).toList();
    }

    /** From /proc: ProcessHandle.info() leaves out the arguments of long command lines. */
    static String commandLine(ProcessHandle p) {
        try {
            return Files.readString(Path.of("/proc/" + p.pid() + "/cmdline")).replace('\0', ' ');
        } catch (java.io.IOException e) {
            return "";
        }
    }

    static long latestStep(Path run) {
        try {
            Optional<Path> latest = Files.isDirectory(run.resolve("checkpoints"))
                    ? Checkpoint.findLatest(run.resolve("checkpoints")) : Optional.empty();
            return latest.isPresent() ? Checkpoint.load(latest.get()).step() : -1;
        } catch (RuntimeException e) {
            return -1; // being written or rotated: look again
        }
    }

    /**
     * Every worker fails the same way (a missing config): the launcher's one line is the worker's, with who reported
     * it and its exit code.
     */
    @Test
    void workerErrorsAreReportedWithTheRankAndExitCode(@TempDir Path tmp) {
        Cli cli = Cli.run(launchArgs(2, List.of("train", "--config", tmp.resolve("missing.yaml").toString()))
                .toArray(String[]::new));
        assertEquals(2, cli.exitCode(), cli.toString());
        String line = cli.err().lines().filter(l -> l.startsWith("dtrain launch: ")).findFirst().orElseThrow();
        assertTrue(line.matches("dtrain launch: error: rank [01] on \\S+: config file .*missing\\.yaml not found .* \\(reported by rank [01],"
                + " pid \\d+, exit code 2; stopped the other 1 worker\\(s\\) of this node in \\d+\\.\\d s\\)"), line);
    }

    /**
     * A stalled rank (SIGSTOP, as a hung process or a swapped-out machine would be): the launcher's one line names it
     * first, although another rank reported it, says where that rank's thread dump is (a file, not the console),
     * and the last checkpoint stays intact.
     */
    @Test
    void aStalledRankIsNamedFirstAndTheDumpsGoToAFile(@TempDir Path tmp) throws Exception {
        Path run = tmp.resolve("run");
        List<String> sets = microOverrides(run, 8, 400, "training.checkpoint_interval=2", "output.keep_checkpoints=2");
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "2", "--memory-per-worker", "1g",
                "--stop-grace", "2", "--env", "DTRAIN_COLLECTIVE_TIMEOUT=5s", "--"));
        args.addAll(trainArgs(sets));
        CompletableFuture<Cli> launched = CompletableFuture.supplyAsync(() -> Cli.run(args.toArray(String[]::new)));
        ProcessHandle rank1 = null;
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (latestStep(run) < 2) {
                assertTrue(System.nanoTime() < deadline && !launched.isDone(),
                        "no checkpoint of step 2 within 120 s" + (launched.isDone() ? ":\n" + launched.get() : ""));
                Thread.sleep(100);
            }
            rank1 = workers().stream().filter(p -> commandLine(p).contains("-Ddtrain.rank=1")).findFirst()
                    .orElseThrow(() -> new AssertionError("no worker process with -Ddtrain.rank=1"));
            assertEquals(0, new ProcessBuilder("kill", "-STOP", Long.toString(rank1.pid())).start().waitFor());
            Cli cli = launched.get(60, TimeUnit.SECONDS);
            assertEquals(2, cli.exitCode(), cli.toString());
            List<String> headline = cli.err().lines().filter(l -> l.startsWith("dtrain launch: ")).toList();
            assertEquals(1, headline.size(), cli.toString());
            String line = headline.get(0);
            System.out.println(line);
            assertTrue(line.startsWith("dtrain launch: error: rank 1 stopped making progress: it has sent no heartbeat"
                    + " for "), line);
            assertTrue(line.contains("no progress for 5000 ms (DTRAIN_COLLECTIVE_TIMEOUT)") && line.contains(" failed on rank 0"), line);
            assertTrue(line.contains("restart the job from its last checkpoint"), line);
            assertTrue(line.contains("(reported by rank 0, pid "), line);
            java.util.regex.Matcher dump = java.util.regex.Pattern.compile("thread dump of rank 0: (\\S+\\.txt)").matcher(line);
            assertTrue(dump.find(), line);
            assertTrue(Path.of(dump.group(1)).startsWith(run.resolve("logs")), line);
            assertTrue(Files.readString(Path.of(dump.group(1))).startsWith("dtrain thread dump of rank 0 after: rank 1"),
                    dump.group(1));
            assertTrue(!(cli.out() + cli.err()).contains("\tat ") && !(cli.out() + cli.err()).contains("dtrain thread dump"),
                    "no dumps or stack traces on the console: " + cli);
            assertTrue(workers().isEmpty(), "no worker outlives the launcher");
            Checkpoint last = Checkpoint.load(run);
            last.verify();
            assertTrue(last.step() >= 2, "checkpoint step " + last.step());
        } finally {
            if (rank1 != null) {
                new ProcessBuilder("kill", "-CONT", Long.toString(rank1.pid())).start().waitFor();
            }
            workers().forEach(ProcessHandle::destroyForcibly);
        }
    }

    @Test
    void optionErrorsSayWhatToDo() {
        Cli multiNode = Cli.run("launch", "--nproc-per-node", "2", "--nnodes", "2", "--", "train", "-c", "x.yaml");
        assertEquals(2, multiNode.exitCode(), multiNode.toString());
        assertTrue(multiNode.err().contains("needs --rdzv HOST:PORT") && multiNode.err().contains("--secret-file"),
                multiNode.err());

        Cli badRank = Cli.run("launch", "--nproc-per-node", "1", "--nnodes", "2", "--node-rank", "2", "--", "train");
        assertEquals(2, badRank.exitCode(), badRank.toString());
        assertTrue(badRank.err().contains("--node-rank 2 must be in 0..1"), badRank.err());

        Cli badMemory = Cli.run("launch", "--nproc-per-node", "1", "--memory-per-worker", "lots", "--", "train");
        assertEquals(2, badMemory.exitCode(), badMemory.toString());
        assertTrue(badMemory.err().contains("--memory-per-worker: 'lots' is not a byte size"), badMemory.err());
    }

    @Test
    void workerSizeSplitsTheBudget() {
        WorkerSize s = WorkerSize.of(2, 3, "4g");
        assertEquals(3, s.threads());
        assertEquals(4L << 30, s.budgetBytes());
        assertEquals(1L << 30, s.heapBytes());
        assertEquals((4L << 30) / 8 * 5, s.offHeapBytes());
        assertTrue(s.jvmOptions().containsAll(List.of("-Xmx1024m", "-Dorg.bytedeco.javacpp.maxphysicalbytes=" + (4L << 30),
                "-XX:ActiveProcessorCount=3")), s.jvmOptions().toString());
        assertEquals(512L << 20, WorkerSize.of(2, 1, "512m").budgetBytes());
        assertEquals(2_000_000_000L, WorkerSize.of(2, 1, "2GB").budgetBytes(), "GB is decimal everywhere");
        assertEquals(3L << 29, WorkerSize.of(2, 1, "1.5GiB").budgetBytes());
        assertEquals(Math.max(1, Runtime.getRuntime().availableProcessors() / 2),
                WorkerSize.of(2, null, "1g").threads());
    }
}
