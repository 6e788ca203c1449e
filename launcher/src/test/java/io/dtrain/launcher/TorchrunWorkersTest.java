package io.dtrain.launcher;

import static io.dtrain.launcher.DpRuns.microOverrides;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.dtrain.parallel.spawn.WorkerJvm;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Workers started by PyTorch's own torchrun ({@code torchrun --standalone --nproc_per_node 2 --no_python
 * dtrain train ...}: torchrun's variables and nothing of dtrain's): without a secret every worker says what is
 * missing and exits 2; with {@code DTRAIN_TRUSTED_NETWORK=true} they train, equal to one process on the same global
 * batch. Needs /usr/bin/python3 with torch (.ci/run installs Debian's python3-torch).
 */
class TorchrunWorkersTest {
    static final int STEPS = 3;
    @TempDir
    Path tmp;

    @Test
    void realTorchrunWorkersJoinOnATrustedNetworkAndSayWhatIsMissingOtherwise() throws Exception {
        assumeTrue(torchAvailable(), "no torch for /usr/bin/python3");
        Path worker = workerScript();

        Result refused = torchrun(worker, tmp.resolve("refused"), Map.of());
        assertNotEquals(0, refused.exitCode(), refused.output());
        assertTrue(refused.output().contains("dtrain train: error: this worker was started by torchrun, which sets no"
                + " job secret: set DTRAIN_JOB_SECRET (or DTRAIN_JOB_SECRET_FILE) to the same value on every node, or"
                + " DTRAIN_TRUSTED_NETWORK=true if only this job's machines can reach "), refused.output());
        assertTrue(refused.output().contains("exitcode  : 2"), "torchrun reports exit code 2: " + refused.output());

        Path one = tmp.resolve("one");
        List<String> oneSets = microOverrides(one, 8, STEPS);
        Cli reference = Cli.run(trainArgs(oneSets).toArray(String[]::new));
        assertEquals(0, reference.exitCode(), reference.toString());
        Path joined = tmp.resolve("trusted");
        Result trusted = torchrun(worker, joined, Map.of("DTRAIN_TRUSTED_NETWORK", "true"));
        assertEquals(0, trusted.exitCode(), trusted.output());
        List<com.fasterxml.jackson.databind.JsonNode> a = DpRuns.steps(one, 0);
        List<com.fasterxml.jackson.databind.JsonNode> b = DpRuns.steps(joined, 0);
        assertEquals(STEPS, b.size());
        for (int i = 0; i < STEPS; i++) {
            double x = a.get(i).get("loss").asDouble();
            double y = b.get(i).get("loss").asDouble();
            assertTrue(Math.abs(x - y) <= 1e-9 * Math.abs(x), "step " + (i + 1) + ": " + x + " vs " + y);
        }
    }

    private record Result(int exitCode, String output) {
    }

    private Result torchrun(Path worker, Path runDir, Map<String, String> env) throws IOException, InterruptedException {
        // --redirects/--tee 1: Debian's torch 1.13 under Python 3.11 cannot parse their default "0" (an IntFlag's
        // zero member is no longer iterated), so stdout goes to --log_dir and is teed to the console.
        List<String> command = new ArrayList<>(List.of("/usr/bin/python3", "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "--redirects", "1", "--tee", "1", "--log_dir", runDir + "-torchrun",
                "--no_python", worker.toString()));
        command.addAll(trainArgs(microOverrides(runDir, 8, STEPS)));
        ProcessBuilder pb = new ProcessBuilder(command).directory(DpRuns.REPO.toFile()).redirectErrorStream(true)
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().keySet().removeIf(k -> k.startsWith("DTRAIN_") || k.startsWith("SLURM_"));
        pb.environment().put("OMP_NUM_THREADS", "1");
        pb.environment().putAll(env);
        Process p = pb.start();
        String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(3, TimeUnit.MINUTES), "torchrun did not finish: " + output);
        return new Result(p.exitValue(), output);
    }

    /** An executable that runs dtrain's CLI in a JVM as dtrain launch would (this build's class path). */
    private Path workerScript() throws IOException {
        List<String> java = WorkerJvm.of(Main.class).jvmOptions(List.of("-Xmx512m")).command(0).stream()
                .filter(a -> !a.startsWith("-Ddtrain.rank=")).toList();
        Path script = tmp.resolve("dtrain-worker");
        Files.writeString(script, "#!/bin/sh\nexec " + java.stream().map(a -> "'" + a.replace("'", "'\\''") + "'")
                .collect(Collectors.joining(" ")) + " \"$@\"\n");
        Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwx------"));
        return script;
    }

    private static boolean torchAvailable() {
        try {
            Process p = new ProcessBuilder("/usr/bin/python3", "-c", "import torch.distributed.run").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }
}
