package io.dtrain.launcher;

import io.dtrain.parallel.spawn.WorkerJvm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What a user sees when a job cannot come up (issue 15), each with real launcher and worker processes: one line,
 * exit code 2, on every node, naming the cause, instead of a wait until the rendezvous timeout. Two nodes are two
 * launchers on this host (--nnodes 2, --node-rank 0/1).
 */
class BringUpErrorsTest {
    static final String HOST = hostName();

    static String hostName() {
        try {
            return java.net.InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "localhost";
        }
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    /** One node's "dtrain launch --nproc-per-node 1 --nnodes N --node-rank R ... -- train ..." run in {@code dir}. */
    static ProcessBuilder node(Path dir, int nnodes, int nodeRank, int port, Path secret, List<String> launchOptions,
                               List<String> sets) {
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "1", "--nnodes", Integer.toString(nnodes),
                "--node-rank", Integer.toString(nodeRank), "--rdzv", "127.0.0.1:" + port, "--secret-file",
                secret.toString(), "--job-id", "bringup", "--memory-per-worker", "1g", "--stop-grace", "2"));
        args.addAll(launchOptions);
        args.add("--");
        args.addAll(List.of("train", "--config", DpRuns.REPO.resolve("configs/gpt-micro.yaml").toString()));
        for (String s : sets) {
            args.add("--set");
            args.add(s);
        }
        return WorkerJvm.of(Main.class).jvmOptions(List.of("-Xmx512m")).args(args).processBuilder(0, 0)
                .directory(dir.toFile()).redirectErrorStream(true);
    }

    record Ended(int code, String out) {
        String errorLine() {
            return out.lines().filter(l -> l.startsWith("dtrain launch: error: ")).findFirst()
                    .orElseThrow(() -> new AssertionError("no error line in:\n" + out));
        }
    }

    static Ended[] runBoth(ProcessBuilder... nodes) throws Exception {
        Process[] p = new Process[nodes.length];
        for (int i = 0; i < nodes.length; i++) {
            p[i] = nodes[i].start();
        }
        Ended[] ended = new Ended[nodes.length];
        List<Thread> pumps = new ArrayList<>();
        String[] outs = new String[nodes.length];
        for (int i = 0; i < nodes.length; i++) {
            int n = i;
            Thread t = new Thread(() -> {
                try {
                    outs[n] = new String(p[n].getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                } catch (IOException e) {
                    outs[n] = e.toString();
                }
            });
            t.start();
            pumps.add(t);
        }
        for (int i = 0; i < nodes.length; i++) {
            if (!p[i].waitFor(90, TimeUnit.SECONDS)) {
                for (Process q : p) {
                    q.descendants().forEach(ProcessHandle::destroyForcibly);
                    q.destroyForcibly();
                }
                pumps.forEach(t -> {
                    try {
                        t.join(5_000);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                });
                throw new AssertionError("node " + i + " did not exit; node 0 printed:\n" + outs[0] + "\nnode 1 printed:\n"
                        + (outs.length > 1 ? outs[1] : ""));
            }
            pumps.get(i).join(5_000);
            ended[i] = new Ended(p[i].exitValue(), outs[i]);
        }
        return ended;
    }

    static Path secret(Path tmp) throws IOException {
        Path s = tmp.resolve("secret");
        Files.writeString(s, "a-long-random-secret-for-this-test");
        return s;
    }

    @Test
    void dataMissingOnOneNodeIsNamedByItAndByTheOthers(@TempDir Path tmp) throws Exception {
        // The config names data.train relative to the working directory: node 1 runs where there is no data/.
        Path run = tmp.resolve("run");
        List<String> sets = DpRuns.microOverrides(run, 2, 5);
        Path elsewhere = Files.createDirectories(tmp.resolve("node1"));
        int port = freePort();
        Ended[] e = runBoth(node(DpRuns.REPO, 2, 0, port, secret(tmp), List.of(), sets),
                node(elsewhere, 2, 1, port, secret(tmp), List.of(), sets));
        assertEquals(2, e[1].code(), e[1].out());
        assertTrue(e[1].errorLine().startsWith("dtrain launch: error: rank 1 on " + HOST + ": "), e[1].errorLine());
        assertTrue(e[1].errorLine().contains(elsewhere.resolve("data/pile-tiny/") .toString()), e[1].errorLine());
        assertEquals(2, e[0].code(), e[0].out());
        assertTrue(e[0].errorLine().startsWith("dtrain launch: error: rank 1 on " + HOST + " failed before joining: "),
                e[0].errorLine());
        assertTrue(e[0].errorLine().contains(elsewhere.resolve("data/pile-tiny/").toString()), e[0].errorLine());
        assertTrue(e[0].errorLine().contains("; rank 0 stops instead of waiting for it"), e[0].errorLine());
        assertTrue(e[0].errorLine().contains("(reported by rank 0, pid "), e[0].errorLine());
    }

    @Test
    void ranksWhoseConfigsDifferNameTheKeysAndRanks(@TempDir Path tmp) throws Exception {
        List<String> sets = DpRuns.microOverrides(tmp.resolve("run"), 2, 5);
        List<String> other = new ArrayList<>(sets);
        other.add("optimizer.lr=0.005");
        other.add("model.dropout=0.2");
        int port = freePort();
        Ended[] e = runBoth(node(DpRuns.REPO, 2, 0, port, secret(tmp), List.of(), sets),
                node(DpRuns.REPO, 2, 1, port, secret(tmp), List.of(), other));
        for (Ended node : e) {
            assertEquals(2, node.code(), node.out());
            assertTrue(node.errorLine().startsWith("dtrain launch: error: the ranks resolved different run configs"
                    + " (compared by hash at rendezvous): rank 1 differs from rank 0 in model.dropout, optimizer.lr; every"
                    + " rank must run the same configuration"), node.errorLine());
        }
    }

    @Test
    void differentWorldSizesAreNamedOnBothSides(@TempDir Path tmp) throws Exception {
        List<String> sets = DpRuns.microOverrides(tmp.resolve("run"), 2, 5);
        int port = freePort();
        Ended[] e = runBoth(node(DpRuns.REPO, 2, 0, port, secret(tmp), List.of(), sets),
                node(DpRuns.REPO, 3, 1, port, secret(tmp), List.of(), sets));
        assertEquals(2, e[1].code(), e[1].out());
        assertTrue(e[1].errorLine().contains("refused by the rendezvous store of job 'bringup': WORLD_SIZE 3 differs"
                + " from the job's 2 (every worker needs the same WORLD_SIZE)"), e[1].errorLine());
        assertEquals(2, e[0].code(), e[0].out());
        assertTrue(e[0].errorLine().startsWith("dtrain launch: error: rank 1 was refused by the rendezvous store (worker"
                + " on "), e[0].errorLine());
        assertTrue(e[0].errorLine().contains("WORLD_SIZE 3 differs from the job's 2 (every worker needs the same"
                + " WORLD_SIZE); rank 0 stops instead of waiting for it"), e[0].errorLine());
    }

    @Test
    void anUnreachableStoreIsNamedWithAttemptsAndTime(@TempDir Path tmp) throws Exception {
        int port = freePort();
        Ended[] e = runBoth(node(DpRuns.REPO, 2, 1, port, secret(tmp), List.of("--env", "DTRAIN_RENDEZVOUS_TIMEOUT=3s"),
                DpRuns.microOverrides(tmp.resolve("run"), 2, 5)));
        assertEquals(2, e[0].code(), e[0].out());
        assertTrue(e[0].errorLine().matches("dtrain launch: error: no rendezvous store at 127\\.0\\.0\\.1:" + port
                + ": \\d+ connection attempts over 3\\.\\d s \\(backoff 100 ms doubling to 5 s; DTRAIN_RENDEZVOUS_TIMEOUT 3"
                + " s\\), the last one: Connection refused; check that 127\\.0\\.0\\.1 is node 0's address and " + port
                + " its port .*"), e[0].errorLine());
    }

    @Test
    void aPortInUseIsNamedWithHowToChooseAnother(@TempDir Path tmp) throws Exception {
        try (ServerSocket taken = new ServerSocket(0)) {
            int port = taken.getLocalPort();
            Cli cli = Cli.run("launch", "--nproc-per-node", "1", "--rdzv", "127.0.0.1:" + port, "--", "train",
                    "--config", "configs/gpt-micro.yaml");
            assertEquals(2, cli.exitCode(), cli.toString());
            String line = cli.err().lines().filter(l -> l.startsWith("dtrain launch: error:")).findFirst().orElse(cli.err());
            assertTrue(line.startsWith("dtrain launch: error: the rendezvous store cannot listen on port " + port + ": it"
                    + " is in use on this host (another dtrain job, or another program, may be running: ss -ltnp 'sport = :"
                    + port + "' names it); choose another port: dtrain launch --rdzv HOST:PORT, or MASTER_PORT"), line);
        }
    }

    /**
     * Node 1's worker is killed (SIGKILL, as the OOM killer would) as soon as it starts, long before it could join:
     * node 1's launcher tells the store, and node 0's worker stops at once naming rank 1, well within the rendezvous
     * timeout it would otherwise have waited out (--max-restarts 0).
     */
    @Test
    void aWorkerKilledBeforeJoiningIsNamedByTheOthersBeforeTheRendezvousTimeout(@TempDir Path tmp) throws Exception {
        List<String> sets = DpRuns.microOverrides(tmp.resolve("run"), 4, 5);
        int port = freePort();
        long timeoutSeconds = 60;
        ProcessBuilder[] nodes = {node(DpRuns.REPO, 2, 0, port, secret(tmp), List.of(), sets),
                node(DpRuns.REPO, 2, 1, port, secret(tmp), List.of(), sets)};
        for (ProcessBuilder n : nodes) {
            n.environment().put("DTRAIN_RENDEZVOUS_TIMEOUT", timeoutSeconds + "s");
        }
        long t0 = System.nanoTime();
        Process node0 = nodes[0].start();
        Process node1 = nodes[1].start();
        Thread killer = new Thread(() -> {
            while (node1.isAlive()) {
                java.util.Optional<ProcessHandle> worker = node1.descendants()
                        .filter(h -> commandLine(h).contains("-Ddtrain.rank=1\u0000")).findFirst();
                if (worker.isPresent()) {
                    worker.get().destroyForcibly();
                    return;
                }
                try {
                    Thread.sleep(20);
                } catch (InterruptedException e) {
                    return;
                }
            }
        });
        killer.start();
        String[] outs = new String[2];
        Thread pump0 = new Thread(() -> outs[0] = readAll(node0));
        Thread pump1 = new Thread(() -> outs[1] = readAll(node1));
        pump0.start();
        pump1.start();
        boolean ended = node0.waitFor(timeoutSeconds + 30, TimeUnit.SECONDS);
        double seconds = (System.nanoTime() - t0) / 1e9;
        if (!ended) {
            for (Process p : List.of(node0, node1)) {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
            }
        }
        node1.waitFor(30, TimeUnit.SECONDS);
        pump0.join(5_000);
        pump1.join(5_000);
        assertTrue(ended, "node 0 did not exit:\n" + outs[0]);
        Ended e0 = new Ended(node0.exitValue(), outs[0]);
        assertEquals(2, e0.code(), e0.out() + "\nnode 1:\n" + outs[1]);
        assertTrue(e0.errorLine().startsWith("dtrain launch: error: rank 1 (node 1, local rank 0, pid "),
                e0.errorLine() + "\nnode 1:\n" + outs[1]);
        assertTrue(e0.errorLine().contains("was killed by SIGKILL") && e0.errorLine().contains("(exit code 137)")
                && e0.errorLine().contains("reported by the launcher on ")
                && e0.errorLine().contains("; rank 0 stops instead of waiting for it"), e0.errorLine());
        assertTrue(seconds < timeoutSeconds / 2.0, "node 0 took " + seconds + " s of the " + timeoutSeconds
                + " s rendezvous timeout:\n" + outs[0]);
        assertTrue(outs[1].contains("rank 1 (local rank 0, pid ") && outs[1].contains("failed with exit code 137"), outs[1]);
        assertEquals(1, node1.exitValue(), outs[1]);
    }

    /**
     * Node 1's launcher cannot start its worker at all (--pin-cpus with no taskset on its PATH: the program does not
     * exist): it says so in one line and tells the store, and node 0's worker stops at once naming rank 1 and the
     * reason, well within the rendezvous timeout it would otherwise have waited out.
     */
    @Test
    void aWorkerThatCannotBeStartedIsNamedByTheOthersBeforeTheRendezvousTimeout(@TempDir Path tmp) throws Exception {
        List<String> sets = DpRuns.microOverrides(tmp.resolve("run"), 4, 5);
        int port = freePort();
        long timeoutSeconds = 60;
        ProcessBuilder[] nodes = {node(DpRuns.REPO, 2, 0, port, secret(tmp), List.of(), sets),
                node(DpRuns.REPO, 2, 1, port, secret(tmp), List.of("--pin-cpus", "--threads-per-worker", "1"), sets)};
        for (ProcessBuilder n : nodes) {
            n.environment().put("DTRAIN_RENDEZVOUS_TIMEOUT", timeoutSeconds + "s");
        }
        nodes[1].environment().put("PATH", Files.createDirectories(tmp.resolve("empty-path")).toString());
        long t0 = System.nanoTime();
        Ended[] e = runBoth(nodes);
        double seconds = (System.nanoTime() - t0) / 1e9;
        String cause = "rank 1 (node 1, local rank 0) could not be started: Cannot run program \"taskset\"";
        assertEquals(2, e[1].code(), e[1].out());
        assertTrue(e[1].errorLine().startsWith("dtrain launch: error: " + cause), e[1].errorLine());
        assertTrue(e[1].errorLine().contains("taskset (--pin-cpus) on PATH"), e[1].errorLine());
        assertEquals(2, e[0].code(), e[0].out() + "\nnode 1:\n" + e[1].out());
        assertTrue(e[0].errorLine().startsWith("dtrain launch: error: " + cause), e[0].errorLine());
        assertTrue(e[0].errorLine().contains("; reported by the launcher on " + HOST + "; rank 0 stops instead of waiting"
                + " for it"), e[0].errorLine());
        assertTrue(seconds < timeoutSeconds / 2.0, "the nodes took " + seconds + " s of the " + timeoutSeconds
                + " s rendezvous timeout:\n" + e[0].out());
    }

    /**
     * The same with restarts: node 1's launcher cannot start its worker in round 0, which no restart would change, and
     * no round can complete without it. Node 0 ends the job at once naming the cause, instead of waiting out the
     * rendezvous timeout for rank 1 and then again for node 1's launcher to restart.
     */
    @Test
    void aWorkerThatCannotBeStartedEndsARestartableJobAtOnce(@TempDir Path tmp) throws Exception {
        List<String> sets = DpRuns.microOverrides(tmp.resolve("run"), 4, 5);
        int port = freePort();
        long timeoutSeconds = 60;
        ProcessBuilder[] nodes = {node(DpRuns.REPO, 2, 0, port, secret(tmp), List.of("--max-restarts", "1"), sets),
                node(DpRuns.REPO, 2, 1, port, secret(tmp), List.of("--max-restarts", "1", "--pin-cpus",
                        "--threads-per-worker", "1"), sets)};
        for (ProcessBuilder n : nodes) {
            n.environment().put("DTRAIN_RENDEZVOUS_TIMEOUT", timeoutSeconds + "s");
        }
        nodes[1].environment().put("PATH", Files.createDirectories(tmp.resolve("empty-path")).toString());
        long t0 = System.nanoTime();
        Ended[] e = runBoth(nodes);
        double seconds = (System.nanoTime() - t0) / 1e9;
        String cause = "rank 1 (node 1, local rank 0) could not be started: Cannot run program \"taskset\"";
        assertEquals(2, e[1].code(), e[1].out());
        assertTrue(e[1].errorLine().startsWith("dtrain launch: error: " + cause), e[1].errorLine());
        assertEquals(2, e[0].code(), e[0].out() + "\nnode 1:\n" + e[1].out());
        assertTrue(e[0].errorLine().startsWith("dtrain launch: error: " + cause), e[0].errorLine());
        assertTrue(e[0].errorLine().endsWith("; the job cannot restart without that node's workers"), e[0].errorLine());
        assertTrue(seconds < timeoutSeconds / 2.0, "the nodes took " + seconds + " s of the " + timeoutSeconds
                + " s rendezvous timeout:\n" + e[0].out());
    }

    /**
     * DTRAIN_SHM_GRADIENTS decides whether the gradients are a group-wide shared buffer: ranks that differ (here
     * false on node 0, unset = true on node 1) fail at start, on both nodes, naming the setting, values and ranks,
     * instead of waiting in different collectives until the collective timeout.
     */
    @Test
    void aSettingThatDiffersBetweenRanksIsNamedAtStart(@TempDir Path tmp) throws Exception {
        assertBothNodesRefuse(tmp, List.of("--env", "DTRAIN_SHM_GRADIENTS=false"), List.of(),
                "dtrain launch: error: DTRAIN_SHM_GRADIENTS differs between ranks (false on rank 0; true on rank 1): it"
                        + " must be the same on every rank; set the same environment for every worker");
    }

    /** The same for a transport setting, checked as the process group forms (before its ring and exchange). */
    @Test
    void aTransportSettingThatDiffersBetweenRanksIsNamedAtStart(@TempDir Path tmp) throws Exception {
        assertBothNodesRefuse(tmp, List.of(), List.of("--env", "DTRAIN_SHM_ALLREDUCE_MAX_BYTES=0"),
                "dtrain launch: error: DTRAIN_SHM_ALLREDUCE_MAX_BYTES differs between ranks (67108864 on rank 0; 0 on"
                        + " rank 1): it must be the same on every rank");
    }

    /** Two one-worker nodes of gpt-micro with these launcher options each: both exit 2 with an error line so begun. */
    private static void assertBothNodesRefuse(Path tmp, List<String> node0, List<String> node1, String errorStart)
            throws Exception {
        List<String> sets = DpRuns.microOverrides(tmp.resolve("run"), 2, 5);
        int port = freePort();
        Ended[] e = runBoth(node(DpRuns.REPO, 2, 0, port, secret(tmp), node0, sets),
                node(DpRuns.REPO, 2, 1, port, secret(tmp), node1, sets));
        for (Ended node : e) {
            assertEquals(2, node.code(), node.out());
            assertTrue(node.errorLine().startsWith(errorStart), node.errorLine());
        }
    }

    /** The whole command line (ProcessHandle.Info cuts it at 4096 bytes, before a worker's arguments). */
    private static String commandLine(ProcessHandle h) {
        try {
            return new String(Files.readAllBytes(Path.of("/proc/" + h.pid() + "/cmdline")), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }

    private static String readAll(Process p) {
        try {
            return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return e.toString();
        }
    }
}
