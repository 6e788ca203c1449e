package io.dtrain.launcher;

import io.dtrain.metrics.GpuDevices;
import io.dtrain.parallel.WorldConfig;
import io.dtrain.train.StopSignals;
import io.dtrain.parallel.rendezvous.RendezvousServer;
import io.dtrain.parallel.spawn.WorkerJvm;
import io.dtrain.parallel.transport.MediaDriverProcess;
import java.io.IOException;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code dtrain launch}: the options, the job's identity (id, secret, rendezvous address), the rendezvous store on
 * node 0 and the host's media driver. Sizing a worker is {@link WorkerSize}'s job, starting and watching the workers
 * {@link WorkerSupervisor}'s, and the worker command line {@link WorkerJvm}'s.
 */
@Command(name = "launch",
        mixinStandardHelpOptions = true,
        description = {
                "Start the worker processes of a data-parallel job on this node (like torchrun).",
                "",
                "Node 0 hosts the rendezvous store (it outlives worker failures); every node makes sure its Aeron",
                "media driver runs, then starts --nproc-per-node worker JVMs running 'dtrain COMMAND...' with RANK,",
                "LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, DTRAIN_JOB_ID and DTRAIN_JOB_SECRET set. Each worker",
                "gets cores / nproc-per-node compute threads (OMP_NUM_THREADS) and its share of the memory (-Xmx and",
                "ND4J's off-heap limits). Worker output is prefixed with its rank: rank 0 in full, the others only",
                "warnings and errors (--all-ranks-output: everything). If a worker fails, the others are stopped and",
                "the launcher exits non-zero naming the rank and printing the end of its output.",
                "",
                "Examples:",
                "  dtrain launch --nproc-per-node 2 -- train --config configs/gpt-tiny.yaml",
                "  dtrain launch --nproc-per-node 2 --nnodes 2 --node-rank 0 --rdzv node0:29500 --secret-file ~/.dtrain-secret \\",
                "      -- train --config configs/gpt-tiny.yaml       # and --node-rank 1 on the second node"})
public final class LaunchCommand implements Callable<Integer> {
    @Option(names = "--nproc-per-node", required = true, paramLabel = "K",
            description = "Worker processes on this node (one per device; on CPU, usually 1-2 per socket).")
    int nprocPerNode;

    @Option(names = "--nnodes", defaultValue = "1", paramLabel = "N", description = "Nodes in the job (default: ${DEFAULT-VALUE}).")
    int nnodes;

    @Option(names = "--node-rank", defaultValue = "0", paramLabel = "R",
            description = "This node's index, 0..N-1; node 0 hosts the rendezvous store (default: ${DEFAULT-VALUE}).")
    int nodeRank;

    @Option(names = "--rdzv", paramLabel = "HOST:PORT",
            description = "Where node 0's rendezvous store listens (required with --nnodes > 1; default: 127.0.0.1 and a free port).")
    String rdzv;

    @Option(names = "--secret-file", paramLabel = "FILE",
            description = "The job secret, the same file content on every node (required with --nnodes > 1; default: a random secret).")
    Path secretFile;

    @Option(names = "--job-id", paramLabel = "ID",
            description = "The job id (default: random on one node; derived from secret and --rdzv on several).")
    String jobId;

    @Option(names = "--threads-per-worker", paramLabel = "T",
            description = "Compute threads per worker (default: available cores / nproc-per-node, at least 1).")
    Integer threadsPerWorker;

    @Option(names = "--memory-per-worker", paramLabel = "SIZE",
            description = "Memory budget of one worker, e.g. 2g, 512m, 2GiB or 2GB (k/m/g and KiB/MiB/GiB are powers of 1024,"
                    + " KB/MB/GB of 1000): 1/4 Java heap, 5/8 ND4J off-heap, the whole "
                    + "budget as its physical-memory cap (default: 3/4 of physical memory / nproc-per-node).")
    String memoryPerWorker;

    @Option(names = "--pin-cpus", description = "Pin each worker to its own cores with taskset.")
    boolean pinCpus;

    @Option(names = "--all-ranks-output", description = "Print every line of every rank (default: rank 0 in full, others only warnings and errors).")
    boolean allRanksOutput;

    @Option(names = "--log-dir", paramLabel = "DIR", description = "Also write each worker's full output to DIR/rank<r>.log.")
    Path logDir;

    @Option(names = "--env", paramLabel = "KEY=VALUE",
            description = "Extra environment variable for the workers, e.g. --env DTRAIN_COLLECTIVE_TIMEOUT=30s. Repeatable.")
    List<String> extraEnv = new ArrayList<>();

    @Option(names = "--stop-grace", defaultValue = "5", paramLabel = "SECONDS",
            description = "After a failure, seconds the other workers get to exit on SIGTERM before SIGKILL (default: ${DEFAULT-VALUE}).")
    int stopGraceSeconds;

    @Parameters(arity = "1..*", paramLabel = "COMMAND",
            description = "The dtrain command each worker runs, after '--', e.g. -- train --config run.yaml")
    List<String> command = new ArrayList<>();

    @Override
    public Integer call() throws Exception {
        PrintStream out = System.out;
        PrintStream err = System.err;
        validate();
        if (logDir != null) {
            RunLog.use(logDir);
        }
        int worldSize = nnodes * nprocPerNode;
        byte[] secret = readOrCreateSecret();
        String job = jobId != null ? jobId : defaultJobId(secret);
        String host = rdzv == null ? "127.0.0.1" : rdzv.substring(0, rdzv.lastIndexOf(':'));
        int port = rdzv == null ? 0 : Integer.parseInt(rdzv.substring(rdzv.lastIndexOf(':') + 1));
        WorkerSize size = WorkerSize.of(nprocPerNode, threadsPerWorker, memoryPerWorker);

        // Node 0 hosts the store. Wildcard bind with --rdzv so that the other nodes reach it; loopback for one node.
        RendezvousServer store = nodeRank != 0 ? null : RendezvousServer.start(
                rdzv == null ? new InetSocketAddress("127.0.0.1", 0) : new InetSocketAddress(port), job, secret);
        try (store) {
            if (store != null) {
                port = store.port();
            }
            Map<String, String> env = workerEnvironment(worldSize, host, port, job, secret, size);
            ensureMediaDriver(env);
            out.printf(Locale.ROOT, "launch: job %s, ranks %d-%d of %d on this node (node %d of %d), store %s:%d; "
                            + "each worker: %s%n", job, nodeRank * nprocPerNode, (nodeRank + 1) * nprocPerNode - 1,
                    worldSize, nodeRank, nnodes, host, port, size.describe());
            List<Map<String, String>> perWorker = workerDevices(env, out);
            List<List<String>> pinned = pinCpus ? size.pinnedPrefixes(nprocPerNode) : null;
            try (WorkerSupervisor workers = new WorkerSupervisor(out, err, allRanksOutput, logDir, stopGraceSeconds)) {
                forwardStopSignals(workers, out);
                for (int local = 0; local < nprocPerNode; local++) {
                    int rank = nodeRank * nprocPerNode + local;
                    WorkerJvm worker = WorkerJvm.of(Main.class).jvmOptions(size.jvmOptions()).args(command)
                            .environment(perWorker.get(local));
                    if (pinned != null) {
                        worker.prefix(pinned.get(local));
                    }
                    workers.start(rank, local, worker.processBuilder(rank, local));
                }
                return workers.awaitAll();
            }
        }
    }

    /**
     * Each worker's environment: on the CUDA backend one GPU each ({@link #gpuEnvironments}); on the CPU backend all
     * alike.
     */
    private List<Map<String, String>> workerDevices(Map<String, String> env, PrintStream out) {
        if (!GpuDevices.cudaBackend()) {
            out.println("launch: backend cpu");
            return java.util.Collections.nCopies(nprocPerNode, env);
        }
        List<Map<String, String>> perWorker = gpuEnvironments(nprocPerNode, env);
        for (int local = 0; local < nprocPerNode; local++) {
            out.printf(Locale.ROOT, "launch: backend cuda: local rank %d -> CUDA_VISIBLE_DEVICES=%s%n", local,
                    perWorker.get(local).get("CUDA_VISIBLE_DEVICES"));
        }
        return perWorker;
    }

    /**
     * One GPU per worker: local rank r gets the r-th GPU as its only {@code CUDA_VISIBLE_DEVICES} entry (the r-th of
     * the user's own list when {@code env} has one), with {@code CUDA_DEVICE_ORDER=PCI_BUS_ID} (unless set) so that
     * CUDA numbers the GPUs as nvidia-smi does; more workers than GPUs and unsupported GPUs are refused.
     */
    static List<Map<String, String>> gpuEnvironments(int nproc, Map<String, String> env) {
        List<String> gpus = GpuDevices.placement(nproc, env);
        List<Map<String, String>> out = new ArrayList<>();
        for (String gpu : gpus) {
            Map<String, String> e = new HashMap<>(env);
            e.put("CUDA_VISIBLE_DEVICES", gpu);
            e.putIfAbsent("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
            out.add(e);
        }
        return out;
    }

    /**
     * SIGTERM and SIGUSR1 (a scheduler taking the node back) go on to every worker, which finish their step and write a
     * checkpoint together (exit status 75); a second SIGTERM kills them at once.
     */
    private static void forwardStopSignals(WorkerSupervisor workers, PrintStream out) {
        boolean[] termSeen = {false};
        try {
            sun.misc.Signal.handle(new sun.misc.Signal("TERM"), s -> {
                if (termSeen[0]) {
                    out.println("launch: second SIGTERM: killing the workers (the previous checkpoint is intact)");
                    workers.killAll();
                    Runtime.getRuntime().halt(StopSignals.EXIT_STOPPED);
                }
                termSeen[0] = true;
                out.println("launch: SIGTERM: asking the workers to checkpoint and stop");
                workers.forward("TERM");
            });
            sun.misc.Signal.handle(new sun.misc.Signal("USR1"), s -> {
                out.println("launch: SIGUSR1: asking the workers to checkpoint and stop");
                workers.forward("USR1");
            });
        } catch (IllegalArgumentException e) {
            // signals reserved by the JVM (-Xrs): the default behaviour stays
        }
    }

    /** Starts this host's media driver unless the workers use an external one (it outlives worker failures). */
    private void ensureMediaDriver(Map<String, String> env) {
        Map<String, String> firstWorker = new HashMap<>(env);
        firstWorker.put("RANK", Integer.toString(nodeRank * nprocPerNode));
        firstWorker.put("LOCAL_RANK", "0");
        WorldConfig driverConfig = WorldConfig.fromEnvironment(firstWorker);
        if (!driverConfig.externalDriver()) {
            int idleExit = Integer.parseInt(env.getOrDefault("DTRAIN_DRIVER_IDLE_EXIT", "10"));
            MediaDriverProcess.ensureRunning(driverConfig.resolvedAeronDir(), idleExit, Duration.ofSeconds(30));
        }
    }

    private void validate() {
        if (nprocPerNode < 1) {
            throw new UserError("--nproc-per-node must be >= 1, got " + nprocPerNode);
        }
        if (nnodes < 1 || nodeRank < 0 || nodeRank >= nnodes) {
            throw new UserError("--node-rank " + nodeRank + " must be in 0.." + (nnodes - 1) + " (--nnodes " + nnodes + ")");
        }
        if (nnodes > 1 && (rdzv == null || secretFile == null)) {
            throw new UserError("a job on " + nnodes + " nodes needs --rdzv HOST:PORT (node 0's address, the same on "
                    + "every node) and --secret-file FILE (the same secret on every node)");
        }
        if (rdzv != null && !rdzv.matches(".+:\\d{1,5}")) {
            throw new UserError("--rdzv '" + rdzv + "' must be HOST:PORT, e.g. node0:29500");
        }
        if (command.isEmpty()) {
            throw new UserError("no worker command: add it after '--', e.g. dtrain launch --nproc-per-node 2 -- train --config run.yaml");
        }
        for (String kv : extraEnv) {
            if (!kv.matches("[A-Za-z_][A-Za-z0-9_]*=.*")) {
                throw new UserError("--env '" + kv + "' must be KEY=VALUE");
            }
        }
        if (stopGraceSeconds < 0) {
            throw new UserError("--stop-grace must be >= 0, got " + stopGraceSeconds);
        }
    }

    private byte[] readOrCreateSecret() throws IOException {
        if (secretFile != null) {
            if (!Files.isReadable(secretFile)) {
                throw new UserError("cannot read the secret file " + secretFile + " (--secret-file)");
            }
            String s = Files.readString(secretFile, StandardCharsets.UTF_8).strip();
            if (s.isEmpty()) {
                throw new UserError("the secret file " + secretFile + " is empty; put a long random string in it, e.g. "
                        + "openssl rand -hex 32 > " + secretFile);
            }
            return s.getBytes(StandardCharsets.UTF_8);
        }
        byte[] random = new byte[32];
        new SecureRandom().nextBytes(random);
        return HexFormat.of().formatHex(random).getBytes(StandardCharsets.UTF_8);
    }

    /** One node: random. Several: the same on every node without talking to each other (HMAC of the rdzv address). */
    private String defaultJobId(byte[] secret) throws GeneralSecurityException {
        if (nnodes == 1) {
            byte[] random = new byte[6];
            new SecureRandom().nextBytes(random);
            return "dtrain-" + HexFormat.of().formatHex(random);
        }
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret, "HmacSHA256"));
        byte[] h = mac.doFinal(("job-id|" + rdzv + "|" + nnodes + "x" + nprocPerNode).getBytes(StandardCharsets.UTF_8));
        return "dtrain-" + HexFormat.of().formatHex(h, 0, 6);
    }

    private Map<String, String> workerEnvironment(int worldSize, String host, int port, String job, byte[] secret,
                                                  WorkerSize size) {
        Map<String, String> env = new HashMap<>(System.getenv());
        env.put("WORLD_SIZE", Integer.toString(worldSize));
        env.put("LOCAL_WORLD_SIZE", Integer.toString(nprocPerNode));
        env.put("NODE_RANK", Integer.toString(nodeRank));
        env.put("GROUP_RANK", Integer.toString(nodeRank));
        env.put("MASTER_ADDR", host);
        env.put("MASTER_PORT", Integer.toString(port));
        env.put("DTRAIN_JOB_ID", job);
        env.remove("DTRAIN_JOB_SECRET_FILE");
        env.put("DTRAIN_JOB_SECRET", new String(secret, StandardCharsets.UTF_8));
        env.put("DTRAIN_STORE", "external");
        env.putAll(size.environment());
        for (String kv : extraEnv) {
            int eq = kv.indexOf('=');
            env.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        return env;
    }
}
