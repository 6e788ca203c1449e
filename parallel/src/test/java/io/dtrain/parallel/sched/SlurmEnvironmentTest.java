package io.dtrain.parallel.sched;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.common.UserFacingException;
import io.dtrain.parallel.WorldConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Slurm's variables as torchrun's, its host lists, and the job secret derived from the user's own. */
class SlurmEnvironmentTest {
    @TempDir
    Path home;

    /** What srun -N2 -n4 gives task {@code procId} (as measured on a real slurmd: see notes/slurm-single-host.md). */
    private Map<String, String> srunTask(int procId) {
        Map<String, String> env = new HashMap<>();
        env.put("SLURM_JOB_ID", "12345");
        env.put("SLURM_JOB_NODELIST", "node[1-2]");
        env.put("SLURM_STEP_NODELIST", "node[1-2]");
        env.put("SLURM_NTASKS", "4");
        env.put("SLURM_STEP_NUM_TASKS", "4");
        env.put("SLURM_STEP_NUM_NODES", "2");
        env.put("SLURM_NNODES", "2");
        env.put("SLURM_PROCID", Integer.toString(procId));
        env.put("SLURM_LOCALID", Integer.toString(procId % 2));
        env.put("SLURM_NODEID", Integer.toString(procId / 2));
        env.put("SLURMD_NODENAME", "node" + (procId / 2 + 1));
        env.put("DTRAIN_SECRET_DIR", home.toString());
        return env;
    }

    @Test
    void hostListsExpandAsScontrolShowHostnames() {
        assertEquals(List.of("node01", "node02", "node03", "node04", "node07"), SlurmNodeList.expand("node[01-04,07]"));
        assertEquals(List.of("a1", "b2", "b3"), SlurmNodeList.expand("a1,b[2-3]"));
        assertEquals(List.of("gpu-node"), SlurmNodeList.expand("gpu-node"));
        assertEquals(List.of("r1-n1", "r1-n2", "r2-n1", "r2-n2"), SlurmNodeList.expand("r[1-2]-n[1-2]"));
        assertEquals(List.of("n9", "n10", "x"), SlurmNodeList.expand("n[9-10],x"));
        assertEquals(List.of("n098", "n099", "n100"), SlurmNodeList.expand("n[098-100]"));
        UserFacingException open = assertThrows(UserFacingException.class, () -> SlurmNodeList.expand("node[1-2"));
        assertTrue(open.getMessage().contains("no closing ']'"), open.getMessage());
        assertThrows(UserFacingException.class, () -> SlurmNodeList.expand("node[a-b]"));
        assertThrows(UserFacingException.class, () -> SlurmNodeList.expand("node[5-2]"));
    }

    @Test
    void aTaskOfAJobStepIsARankOfTheWorld() {
        for (int procId = 0; procId < 4; procId++) {
            WorldConfig w = WorldConfig.fromEnvironment(srunTask(procId));
            assertEquals(procId, w.rank());
            assertEquals(4, w.worldSize());
            assertEquals(procId % 2, w.localRank());
            assertEquals("node1", w.masterAddr());
            assertEquals(20000 + 2345, w.masterPort());
            assertEquals("slurm-12345", w.jobId());
            assertEquals("node" + (procId / 2 + 1), w.nodeId());
            assertArrayEquals(WorldConfig.fromEnvironment(srunTask(0)).secret(), w.secret(), "one secret per job");
        }
        Map<String, String> other = srunTask(0);
        other.put("SLURM_JOB_ID", "12346");
        assertNotEquals(new String(WorldConfig.fromEnvironment(srunTask(0)).secret()),
                new String(WorldConfig.fromEnvironment(other).secret()), "another job, another secret");
        assertEquals(20000 + 2346, WorldConfig.fromEnvironment(other).masterPort(), "another job, another port");
    }

    @Test
    void torchrunsVariablesWinAndABatchScriptIsOneProcess() {
        Map<String, String> launched = srunTask(1);
        launched.putAll(Map.of("RANK", "3", "WORLD_SIZE", "8", "MASTER_ADDR", "10.0.0.1", "MASTER_PORT", "29500",
                "DTRAIN_JOB_SECRET", "s3cret", "DTRAIN_JOB_ID", "job"));
        assertSame(launched, SlurmEnvironment.asTorchrunVariables(launched));
        WorldConfig w = WorldConfig.fromEnvironment(launched);
        assertEquals(3, w.rank());
        assertEquals(8, w.worldSize());
        assertEquals("10.0.0.1", w.masterAddr());

        Map<String, String> batchBody = new HashMap<>(Map.of("SLURM_JOB_ID", "7", "SLURM_NTASKS", "4",
                "SLURM_JOB_NODELIST", "node[1-2]", "SLURM_PROCID", "0"));
        assertEquals(1, WorldConfig.fromEnvironment(batchBody).worldSize(), "the batch script itself is not a job step");
    }

    @Test
    void theUsersSecretIsPrivateCreatedOnceAndRefusedWhenOthersCanReadIt() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            List<Future<byte[]>> racers = new ArrayList<>();
            for (int i = 0; i < 8; i++) {
                racers.add(pool.submit((Callable<byte[]>) () -> UserSecret.forJob(srunTask(0), "slurm-1")));
            }
            byte[] first = racers.get(0).get();
            for (Future<byte[]> f : racers) {
                assertArrayEquals(first, f.get(), "tasks starting together derive one secret");
            }
        } finally {
            pool.shutdown();
        }
        Path file = home.resolve("secret");
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(file)));
        try (var left = Files.list(home)) {
            assertEquals(1, left.count(), "no temporary file left");
        }
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-r--r--"));
        UserFacingException e = assertThrows(UserFacingException.class, () -> UserSecret.forJob(srunTask(0), "x"));
        assertTrue(e.getMessage().contains("can be read by others") && e.getMessage().contains("chmod 600 " + file),
                e.getMessage());
    }

    @Test
    void workersOfRealTorchrunSayWhatIsMissingOrJoinOnATrustedNetwork() {
        Map<String, String> torchrun = new HashMap<>(Map.of("RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1",
                "MASTER_ADDR", "127.0.0.1", "MASTER_PORT", "29511", "TORCHELASTIC_RUN_ID", "none",
                "TORCHELASTIC_USE_AGENT_STORE", "False"));
        UserFacingException e = assertThrows(UserFacingException.class, () -> WorldConfig.fromEnvironment(torchrun));
        assertEquals("this worker was started by torchrun, which sets no job secret: set DTRAIN_JOB_SECRET (or"
                + " DTRAIN_JOB_SECRET_FILE) to the same value on every node, or DTRAIN_TRUSTED_NETWORK=true if only this"
                + " job's machines can reach 127.0.0.1:29511 (then neither the rendezvous nor the udp data is"
                + " authenticated); dtrain launch sets a secret itself", e.getMessage());
        torchrun.put("DTRAIN_TRUSTED_NETWORK", "true");
        WorldConfig w = WorldConfig.fromEnvironment(torchrun);
        assertEquals("none", w.jobId());
        assertTrue(w.insecureTransport());
        assertEquals(29511, w.masterPort());
        torchrun.put("TORCHELASTIC_USE_AGENT_STORE", "True");
        assertEquals(29512, WorldConfig.fromEnvironment(torchrun).masterPort(), "torchrun's agent store has MASTER_PORT");
    }
}
