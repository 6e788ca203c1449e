package io.dtrain.launcher;

import io.dtrain.common.UserFacingException;
import io.dtrain.metrics.GpuDevices;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One worker per GPU on the CUDA backend, tested on the CPU: a fake nvidia-smi (a real script on PATH, answering
 * only the query dtrain sends) lists the node's GPUs; {@code dtrain launch}'s per-worker environments, the worker's
 * own device and every refusal come from its output.
 */
class GpuPlacementTest {

    /** A PATH holding an nvidia-smi that prints {@code lines} for the placement query and fails on anything else. */
    static Map<String, String> fakeNode(Path dir, String... lines) throws IOException {
        Path smi = dir.resolve("nvidia-smi");
        Files.writeString(smi, "#!/bin/sh\n"
                + "if [ \"$1\" = \"--query-gpu=" + GpuDevices.QUERY + "\" ] && [ \"$2\" = \"--format=csv,noheader\" ]; then\n"
                + "cat <<'EOF'\n" + String.join("\n", lines) + "\nEOF\nexit 0\nfi\n"
                + "echo \"unexpected arguments: $*\" >&2; exit 9\n");
        Files.setPosixFilePermissions(smi, PosixFilePermissions.fromString("rwxr-xr-x"));
        Map<String, String> env = new HashMap<>();
        env.put("PATH", dir.toString());
        return env;
    }

    static String[] v100s(int n) {
        String[] lines = new String[n];
        for (int i = 0; i < n; i++) {
            lines[i] = i + ", Tesla V100-SXM2-16GB, 16160 MiB, 7.0";
        }
        return lines;
    }

    @Test
    void eachWorkerGetsItsOwnGpu(@TempDir Path dir) throws IOException {
        Map<String, String> env = fakeNode(dir, v100s(8));
        List<Map<String, String>> workers = LaunchCommand.gpuEnvironments(8, env);
        assertEquals(8, workers.size());
        for (int r = 0; r < 8; r++) {
            assertEquals(Integer.toString(r), workers.get(r).get("CUDA_VISIBLE_DEVICES"));
            assertEquals("PCI_BUS_ID", workers.get(r).get("CUDA_DEVICE_ORDER"), "CUDA numbers GPUs as nvidia-smi");
            assertEquals(dir.toString(), workers.get(r).get("PATH"), "the rest of the environment is kept");
        }
        // the worker's side: its one GPU, as it logs it and its step records carry it
        assertEquals("GPU 5 Tesla V100-SXM2-16GB, 15.8 GiB, compute capability 7.0",
                GpuDevices.deviceOfThisProcess(true, workers.get(5)));
        assertEquals("cpu", GpuDevices.deviceOfThisProcess(false, workers.get(5)));
    }

    @Test
    void aUsersCudaVisibleDevicesListIsIndexedIntoAndRespected(@TempDir Path dir) throws IOException {
        Map<String, String> env = fakeNode(dir, v100s(8));
        env.put("CUDA_VISIBLE_DEVICES", "6, 2,7");
        env.put("CUDA_DEVICE_ORDER", "FASTEST_FIRST");
        List<Map<String, String>> workers = LaunchCommand.gpuEnvironments(2, env);
        assertEquals("6", workers.get(0).get("CUDA_VISIBLE_DEVICES"));
        assertEquals("2", workers.get(1).get("CUDA_VISIBLE_DEVICES"));
        assertEquals("FASTEST_FIRST", workers.get(1).get("CUDA_DEVICE_ORDER"), "a user's own order is kept");
        UserFacingException e = assertThrows(UserFacingException.class, () -> LaunchCommand.gpuEnvironments(4, env));
        assertEquals("--nproc-per-node 4 but CUDA_VISIBLE_DEVICES=6, 2,7 lists 3 GPU(s): dtrain runs one worker per"
                + " GPU; use --nproc-per-node 3 or less", e.getMessage());
        env.put("CUDA_VISIBLE_DEVICES", "3,9");
        e = assertThrows(UserFacingException.class, () -> LaunchCommand.gpuEnvironments(2, env));
        assertEquals("CUDA_VISIBLE_DEVICES=3,9 names GPU 9, which nvidia-smi does not list (GPUs 0,1,2,3,4,5,6,7)",
                e.getMessage());
    }

    @Test
    void moreWorkersThanGpusAreRefused(@TempDir Path dir) throws IOException {
        Map<String, String> env = fakeNode(dir, v100s(4));
        UserFacingException e = assertThrows(UserFacingException.class, () -> LaunchCommand.gpuEnvironments(8, env));
        assertEquals("--nproc-per-node 8 but this node has 4 GPU(s) (nvidia-smi): dtrain runs one worker per GPU;"
                + " use --nproc-per-node 4 or less", e.getMessage());
    }

    @Test
    void aGpuTheCuda116BackendCannotRunIsRefusedWithTheReason(@TempDir Path dir) throws IOException {
        Map<String, String> env = fakeNode(dir, "0, NVIDIA H100 80GB HBM3, 81559 MiB, 9.0",
                "1, NVIDIA A100-SXM4-40GB, 40960 MiB, 8.0");
        UserFacingException e = assertThrows(UserFacingException.class, () -> LaunchCommand.gpuEnvironments(2, env));
        assertEquals("GPU 0 NVIDIA H100 80GB HBM3, 79.6 GiB, compute capability 9.0 is not supported: ND4J"
                + " 1.0.0-M2.1's CUDA 11.6 backend runs on compute capability 3.5 to 8.6 (CUDA 11.6 predates this GPU's"
                + " architecture); use V100/A100-class GPUs (p3/p4 instances), or train on the CPU backend", e.getMessage());
        env.put("CUDA_VISIBLE_DEVICES", "1");
        assertEquals("1", LaunchCommand.gpuEnvironments(1, env).get(0).get("CUDA_VISIBLE_DEVICES"), "the A100 is fine");
        assertTrue(GpuDevices.deviceOfThisProcess(true, env).contains("A100"));
    }

    @Test
    void withoutNvidiaSmiOrWithAFailingOneTheReasonIsGiven(@TempDir Path dir) throws IOException {
        Map<String, String> none = new HashMap<>(Map.of("PATH", dir.resolve("empty").toString()));
        UserFacingException e = assertThrows(UserFacingException.class, () -> LaunchCommand.gpuEnvironments(1, none));
        assertTrue(e.getMessage().startsWith("the CUDA backend needs nvidia-smi on PATH"), e.getMessage());
        Path broken = Files.createDirectories(dir.resolve("broken"));
        Files.writeString(broken.resolve("nvidia-smi"), "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't"
                + " communicate with the NVIDIA driver.\"\nexit 9\n");
        Files.setPosixFilePermissions(broken.resolve("nvidia-smi"), PosixFilePermissions.fromString("rwxr-xr-x"));
        e = assertThrows(UserFacingException.class,
                () -> LaunchCommand.gpuEnvironments(1, new HashMap<>(Map.of("PATH", broken.toString()))));
        assertTrue(e.getMessage().contains("failed (exit code 9): NVIDIA-SMI has failed because it couldn't communicate"
                + " with the NVIDIA driver.; check the NVIDIA driver"), e.getMessage());
    }
}
