package io.dtrain.launcher;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** Where dtrain launch's node sits: its flags (torchrun's spellings too), or a Slurm job step. */
class JobPlacementTest {
    @TempDir
    Path tmp;

    private static final JobPlacement.Flags NO_FLAGS = new JobPlacement.Flags(null, null, null, null, null, null, false);

    /** srun -N2 --ntasks-per-node=1 on node {@code node} of a job with 4 GPUs per node. */
    private Map<String, String> slurmLauncher(int node) {
        Map<String, String> env = new HashMap<>(Map.of("SLURM_JOB_ID", "4242", "SLURM_JOB_NODELIST", "gpu[07-08]",
                "SLURM_STEP_NODELIST", "gpu[07-08]", "SLURM_STEP_NUM_TASKS", "2", "SLURM_STEP_NUM_NODES", "2",
                "SLURM_PROCID", Integer.toString(node), "SLURM_NODEID", Integer.toString(node),
                "SLURMD_NODENAME", "gpu0" + (7 + node), "SLURM_GPUS_ON_NODE", "4"));
        env.put("DTRAIN_SECRET_DIR", tmp.toString());
        return env;
    }

    @Test
    void underSlurmEveryNodeFindsTheSameJobWithoutFlags() throws Exception {
        JobPlacement node0 = JobPlacement.resolve(NO_FLAGS, slurmLauncher(0));
        JobPlacement node1 = JobPlacement.resolve(NO_FLAGS, slurmLauncher(1));
        assertEquals(List.of(4, 2, 0, "gpu07", 24242, "slurm-4242", "gpu07"), List.of(node0.nprocPerNode(), node0.nnodes(),
                node0.nodeRank(), node0.rdzvHost(), node0.rdzvPort(), node0.jobId(), node0.nodeId()));
        assertEquals(List.of(1, "gpu07", 24242, "slurm-4242", "gpu08"), List.of(node1.nodeRank(), node1.rdzvHost(),
                node1.rdzvPort(), node1.jobId(), node1.nodeId()));
        assertArrayEquals(node0.secret(), node1.secret());

        JobPlacement flagged = JobPlacement.resolve(new JobPlacement.Flags(2, null, null, null, null, null, false),
                slurmLauncher(1));
        assertEquals(2, flagged.nprocPerNode(), "--nproc-per-node wins over the GPU count");

        Map<String, String> perWorker = slurmLauncher(0);
        perWorker.put("SLURM_STEP_NUM_TASKS", "8");
        UserError e = assertThrows(UserError.class, () -> JobPlacement.resolve(NO_FLAGS, perWorker));
        assertEquals("srun started 8 tasks on 2 nodes, but dtrain launch runs once per node and starts the workers"
                + " itself: use srun --ntasks-per-node=1 dtrain launch ..., or srun dtrain train ... for one Slurm task"
                + " per worker", e.getMessage());
    }

    @Test
    void flagsWinOverSlurmAndASecretMayComeFromTheEnvironment() throws Exception {
        Map<String, String> env = slurmLauncher(0);
        env.put("DTRAIN_JOB_SECRET", "from-a-kubernetes-secret");
        JobPlacement p = JobPlacement.resolve(new JobPlacement.Flags(1, 3, 2, "head:29400", null, null, false), env);
        assertEquals(List.of(1, 3, 2, "head", 29400, "flags"), List.of(p.nprocPerNode(), p.nnodes(), p.nodeRank(),
                p.rdzvHost(), p.rdzvPort(), p.source()));
        assertEquals("from-a-kubernetes-secret", new String(p.secret(), StandardCharsets.UTF_8));
        assertNull(p.nodeId());

        UserError noSecret = assertThrows(UserError.class, () -> JobPlacement.resolve(
                new JobPlacement.Flags(1, 2, 0, "head:29400", null, null, false), Map.of()));
        assertEquals("a job on 2 nodes needs --rdzv HOST:PORT (node 0's address, the same on every node) and"
                + " --secret-file FILE or DTRAIN_JOB_SECRET (the same secret on every node)", noSecret.getMessage());
        UserError standalone = assertThrows(UserError.class, () -> JobPlacement.resolve(
                new JobPlacement.Flags(1, 2, 0, null, null, null, true), Map.of()));
        assertEquals("--standalone is a one-node job; drop it or --nnodes 2", standalone.getMessage());
        Path empty = Files.writeString(tmp.resolve("empty"), "\n");
        UserError emptyFile = assertThrows(UserError.class, () -> JobPlacement.resolve(
                new JobPlacement.Flags(1, 1, 0, null, empty, null, false), Map.of()));
        assertEquals("the secret file " + empty + " (--secret-file) is empty; put a long random string in it, e.g."
                + " openssl rand -hex 32 > " + empty, emptyFile.getMessage());
    }

    @Test
    void torchrunsFlagSpellingsAreAccepted() {
        LaunchCommand c = new LaunchCommand();
        new CommandLine(c).parseArgs("--nproc_per_node", "2", "--nnodes", "2", "--node_rank", "1",
                "--rdzv_endpoint", "head:29400", "--rdzv_id", "job7", "--rdzv_backend", "c10d", "--log_dir", "logs",
                "--", "train", "--config", "configs/gpt-micro.yaml");
        assertEquals(List.of(2, 2, 1, "head:29400", "job7", "c10d", "logs"), List.of(c.nprocPerNode, c.nnodes,
                c.nodeRank, c.rdzv, c.jobId, c.rdzvBackend, c.logDir.toString()));
        LaunchCommand d = new LaunchCommand();
        new CommandLine(d).parseArgs("--nproc-per-node", "1", "--rdzv-endpoint", "h:1", "--rdzv-id", "x", "--standalone",
                "--master_addr", "10.0.0.1", "--master_port", "29500", "--", "train");
        assertEquals(List.of("h:1", "x", true, "10.0.0.1", 29500), List.of(d.rdzv, d.jobId, d.standalone, d.masterAddr,
                d.masterPort));
    }
}
