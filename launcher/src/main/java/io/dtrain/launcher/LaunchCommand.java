package io.dtrain.launcher;

import io.dtrain.metrics.GpuDevices;
import io.dtrain.parallel.WorldConfig;
import io.dtrain.train.StopSignals;
import io.dtrain.parallel.rendezvous.RendezvousClient;
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
    @Option(names = {"--nproc-per-node", "--nproc_per_node"}, paramLabel = "K",
            description = "Worker processes on this node (one per device; on CPU, usually 1-2 per socket; default: the GPUs"
                    + " Slurm gave this node, else 1).")
    Integer nprocPerNode;

    @Option(names = "--nnodes", paramLabel = "N", description = "Nodes in the job (default: 1, or the Slurm job step's nodes).")
    Integer nnodes;

    @Option(names = {"--node-rank", "--node_rank"}, paramLabel = "R",
            description = "This node's index, 0..N-1; node 0 hosts the rendezvous store (default: 0, or SLURM_NODEID).")
    Integer nodeRank;

    @Option(names = {"--rdzv", "--rdzv-endpoint", "--rdzv_endpoint"}, paramLabel = "HOST:PORT",
            description = "Where node 0's rendezvous store listens (required with --nnodes > 1; default: 127.0.0.1 and a"
                    + " free port, or under Slurm the step's first node and a port derived from the job id).")
    String rdzv;

    @Option(names = {"--master-addr", "--master_addr"}, paramLabel = "HOST", hidden = true,
            description = "torchrun's static rendezvous: the same as --rdzv HOST:PORT with --master-port.")
    String masterAddr;

    @Option(names = {"--master-port", "--master_port"}, paramLabel = "PORT", hidden = true)
    Integer masterPort;

    @Option(names = {"--rdzv-backend", "--rdzv_backend"}, paramLabel = "c10d|static", hidden = true,
            description = "Accepted for torchrun command lines; dtrain has one rendezvous (node 0's store).")
    String rdzvBackend;

    @Option(names = "--standalone", description = "One node, a free local port and a random job id (torchrun's"
            + " --standalone; what dtrain does anyway without --nnodes/--rdzv).")
    boolean standalone;

    @Option(names = "--secret-file", paramLabel = "FILE",
            description = "The job secret, the same file content on every node (required with --nnodes > 1 unless"
                    + " DTRAIN_JOB_SECRET is set; default: random on one node, under Slurm derived from ~/.dtrain/secret).")
    Path secretFile;

    @Option(names = {"--job-id", "--rdzv-id", "--rdzv_id"}, paramLabel = "ID",
            description = "The job id (default: random on one node; derived from secret and --rdzv on several; slurm-JOBID"
                    + " under Slurm).")
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

    @Option(names = {"--log-dir", "--log_dir"}, paramLabel = "DIR", description = "Also write each worker's full output to DIR/rank<r>.log.")
    Path logDir;

    @Option(names = "--env", paramLabel = "KEY=VALUE",
            description = "Extra environment variable for the workers, e.g. --env DTRAIN_COLLECTIVE_TIMEOUT=30s. Repeatable.")
    List<String> extraEnv = new ArrayList<>();

    @Option(names = "--insecure-transport",
            description = "Send udp frames between hosts without authenticating them (a trusted network only; by default"
                    + " every frame carries a MAC keyed from the job secret). Sets DTRAIN_INSECURE_TRANSPORT=true.")
    boolean insecureTransport;

    @Option(names = "--stop-grace", defaultValue = "5", paramLabel = "SECONDS",
            description = "After a failure, seconds the other workers get to exit on SIGTERM before SIGKILL (default: ${DEFAULT-VALUE}).")
    int stopGraceSeconds;

    @Option(names = {"--max-restarts", "--max_restarts"}, defaultValue = "0", paramLabel = "K",
            description = "When a worker dies, stop the workers of every node and start them all again from the latest"
                    + " complete checkpoint, at most K times (like torchrun; default: ${DEFAULT-VALUE}).")
    int maxRestarts;

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
        JobPlacement placement = JobPlacement.resolve(new JobPlacement.Flags(nprocPerNode, nnodes, nodeRank, rendezvous(),
                secretFile, jobId, standalone), System.getenv());
        int nprocPerNode = placement.nprocPerNode();
        int nnodes = placement.nnodes();
        int nodeRank = placement.nodeRank();
        int worldSize = nnodes * nprocPerNode;
        byte[] secret = placement.secret();
        String job = placement.jobId();
        String host = placement.rdzvHost();
        int port = placement.rdzvPort();
        WorkerSize size = WorkerSize.of(nprocPerNode, threadsPerWorker, memoryPerWorker);

        // Node 0 hosts the store. Wildcard bind with --rdzv so that the other nodes reach it; loopback for one node.
        RendezvousServer store = nodeRank != 0 ? null : RendezvousServer.start(
                port == 0 ? new InetSocketAddress("127.0.0.1", 0) : new InetSocketAddress(port), job, secret, worldSize);
        try (store) {
            if (store != null) {
                port = store.port();
            }
            Map<String, String> env = workerEnvironment(placement, host, port, size);
            ensureMediaDriver(env, placement);
            out.printf(Locale.ROOT, "launch: job %s, ranks %d-%d of %d on this node (node %d of %d), store %s:%d%s; "
                            + "each worker: %s%n", job, nodeRank * nprocPerNode, (nodeRank + 1) * nprocPerNode - 1,
                    worldSize, nodeRank, nnodes, host, port,
                    placement.source().equals("flags") ? "" : " (from " + placement.source() + ")", size.describe());
            List<Map<String, String>> perWorker = workerDevices(env, nprocPerNode, out);
            List<List<String>> pinned = pinCpus ? size.pinnedPrefixes(nprocPerNode) : null;
            try (WorkerSupervisor workers = new WorkerSupervisor(out, err, allRanksOutput, logDir, stopGraceSeconds)) {
                forwardStopSignals(workers, out);
                String storeHost = store != null ? "127.0.0.1" : host;
                int storePort = port;
                // Without restarts the other nodes' workers wait for this node's at the rendezvous: a failure here is
                // published to the store, so that they stop at once naming the rank (with restarts the agents see it).
                boolean publishFailures = maxRestarts == 0 && nnodes > 1;
                WorldConfig world = publishFailures ? WorldConfig.fromEnvironment(env) : null;
                JobRestarts.RoundStarter starter = round -> {
                    for (int local = 0; local < nprocPerNode; local++) {
                        int rank = nodeRank * nprocPerNode + local;
                        Map<String, String> roundEnv = new HashMap<>(perWorker.get(local));
                        roundEnv.put("DTRAIN_RESTART_COUNT", Integer.toString(round));
                        WorkerJvm worker = WorkerJvm.of(Main.class).jvmOptions(size.jvmOptions()).args(command)
                                .environment(roundEnv);
                        if (pinned != null) {
                            worker.prefix(pinned.get(local));
                        }
                        try {
                            workers.start(rank, local, worker.processBuilder(rank, local));
                        } catch (IOException e) {
                            String cause = String.format(Locale.ROOT, "rank %d (node %d, local rank %d) could not be"
                                    + " started: %s", rank, nodeRank, local, e.getMessage());
                            if (publishFailures) {
                                publishFailure(rank, cause + "; reported by the launcher on " + world.nodeId(),
                                        placement, storeHost, storePort, world, err);
                            }
                            throw new UserError(cause + "; check that the worker's command can run on this node: "
                                    + (pinned != null ? "taskset (--pin-cpus) on PATH, " : "") + "the JVM "
                                    + Path.of(System.getProperty("java.home"), "bin", "java"), e);
                        }
                    }
                };
                if (maxRestarts == 0) {
                    if (publishFailures) {
                        workers.onFailure(failure -> reportCrash(failure, placement, storeHost, storePort, world, err));
                    }
                    starter.start(0);
                    return workers.awaitAll();
                }
                try (RendezvousClient agent = RendezvousClient.connectAgent(store != null ? "127.0.0.1" : host, port,
                        job, nodeRank, worldSize, secret, WorldConfig.fromEnvironment(env).rendezvousTimeout())) {
                    return new JobRestarts(out, err, store, agent, nodeRank, nnodes, maxRestarts,
                            WorldConfig.fromEnvironment(env).rendezvousTimeout()).run(workers, starter);
                }
            }
        }
    }

    /**
     * A worker that crashed (a signal, a bug; not a user error, which the worker reports itself) may not have joined
     * the rendezvous yet, and the other nodes' workers would wait for it until the rendezvous timeout. This tells node
     * 0's store, as {@code fail/<rank>} (what a rank that fails before joining leaves there), so that they stop at once
     * naming it; a rank the store already knows failed (its connection dropped) keeps the store's word.
     */
    private static void reportCrash(WorkerSupervisor.Outcome failure, JobPlacement placement, String storeHost,
                                     int storePort, WorldConfig world, PrintStream err) {
        if (failure.code() == ErrorHandler.EXIT_USER_ERROR) {
            return;
        }
        publishFailure(failure.failed().rank, failure.cause(placement.nodeRank()) + "; reported by the launcher on "
                + world.nodeId(), placement, storeHost, storePort, world, err);
    }

    /**
     * Leaves {@code fail/<rank>} = {@code cause} in node 0's store (unless the store already holds the rank's
     * failure): what a crashed worker (a signal, a bug) or one that could not be started at all (no such program)
     * tells the other nodes' workers, which stop at once naming it instead of waiting out the rendezvous timeout.
     * Best effort: with no store reachable within 10 s, the others fail as before.
     */
    private static void publishFailure(int rank, String cause, JobPlacement placement, String storeHost, int storePort,
                                       WorldConfig world, PrintStream err) {
        int worldSize = placement.nnodes() * placement.nprocPerNode();
        Duration wait = world.rendezvousTimeout().compareTo(Duration.ofSeconds(10)) < 0 ? world.rendezvousTimeout()
                : Duration.ofSeconds(10);
        String key = RendezvousServer.FAIL_PREFIX + rank;
        try (RendezvousClient agent = RendezvousClient.connectAgent(storeHost, storePort, placement.jobId(),
                placement.nodeRank(), worldSize, placement.secret(), wait)) {
            if (agent.tryGet(key).isEmpty()) {
                agent.set(key, cause);
            }
        } catch (RuntimeException e) {
            err.println("dtrain launch: could not tell the rendezvous store that rank " + rank
                    + " failed (" + e.getMessage() + "); the other nodes' workers find out when their wait times out");
        }
    }

    /**
     * Each worker's environment: on the CUDA backend one GPU each ({@link #gpuEnvironments}); on the CPU backend all
     * alike.
     */
    private static List<Map<String, String>> workerDevices(Map<String, String> env, int nproc, PrintStream out) {
        if (!GpuDevices.cudaBackend()) {
            out.println("launch: backend cpu");
            return java.util.Collections.nCopies(nproc, env);
        }
        List<Map<String, String>> perWorker = gpuEnvironments(nproc, env);
        for (int local = 0; local < nproc; local++) {
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
     * checkpoint together (exit status 75); a second SIGTERM, 2 s or more after the first, kills them at once.
     */
    private static void forwardStopSignals(WorkerSupervisor workers, PrintStream out) {
        long[] firstTermNanos = {0};
        try {
            sun.misc.Signal.handle(new sun.misc.Signal("TERM"), s -> {
                if (firstTermNanos[0] != 0 && System.nanoTime() - firstTermNanos[0] > StopSignals.SAME_DELIVERY.toNanos()) {
                    out.println("launch: second SIGTERM: killing the workers (the previous checkpoint is intact)");
                    workers.killAll();
                    Runtime.getRuntime().halt(StopSignals.EXIT_STOPPED);
                }
                if (firstTermNanos[0] != 0) {
                    return;   // the same delivery twice (e.g. the scheduler and a wrapper script)
                }
                firstTermNanos[0] = System.nanoTime();
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

    /**
     * Starts this host's media driver, so that it outlives worker failures, when the workers will need one: ranks on
     * other nodes, or {@code DTRAIN_TRANSPORT=ipc|udp}. A one-node job over shared memory needs none (a worker that
     * does after all starts it itself), and an external driver is the user's.
     */
    private static void ensureMediaDriver(Map<String, String> env, JobPlacement placement) {
        Map<String, String> firstWorker = new HashMap<>(env);
        firstWorker.put("RANK", Integer.toString(placement.nodeRank() * placement.nprocPerNode()));
        firstWorker.put("LOCAL_RANK", "0");
        WorldConfig driverConfig = WorldConfig.fromEnvironment(firstWorker);
        boolean linksNeedDriver = placement.nnodes() > 1 || driverConfig.transport() == WorldConfig.Transport.IPC
                || driverConfig.transport() == WorldConfig.Transport.UDP;
        if (linksNeedDriver && !driverConfig.externalDriver()) {
            int idleExit = Integer.parseInt(env.getOrDefault("DTRAIN_DRIVER_IDLE_EXIT", "10"));
            MediaDriverProcess.ensureRunning(driverConfig.resolvedAeronDir(), idleExit, Duration.ofSeconds(30));
        }
    }

    private void validate() {
        if (nprocPerNode != null && nprocPerNode < 1) {
            throw new UserError("--nproc-per-node must be >= 1, got " + nprocPerNode);
        }
        if ((masterAddr == null) != (masterPort == null)) {
            throw new UserError("--master-addr and --master-port go together (or use --rdzv HOST:PORT)");
        }
        if (masterAddr != null && rdzv != null) {
            throw new UserError("give either --rdzv HOST:PORT or --master-addr/--master-port, not both");
        }
        if (rdzvBackend != null && !rdzvBackend.equals("c10d") && !rdzvBackend.equals("static")) {
            throw new UserError("--rdzv-backend '" + rdzvBackend + "': dtrain's rendezvous is node 0's store; c10d and"
                    + " static are accepted (and mean the same), etcd is not supported");
        }
        if (command.isEmpty()) {
            throw new UserError("no worker command: add it after '--', e.g. dtrain launch --nproc-per-node 2 -- train --config run.yaml");
        }
        for (String kv : extraEnv) {
            if (!kv.matches("[A-Za-z_][A-Za-z0-9_]*=.*")) {
                throw new UserError("--env '" + kv + "' must be KEY=VALUE");
            }
        }
        if (maxRestarts < 0) {
            throw new UserError("--max-restarts must be >= 0, got " + maxRestarts);
        }
        if (stopGraceSeconds < 0) {
            throw new UserError("--stop-grace must be >= 0, got " + stopGraceSeconds);
        }
    }

    /** --rdzv, or torchrun's --master-addr/--master-port. */
    private String rendezvous() {
        return masterAddr != null ? masterAddr + ":" + masterPort : rdzv;
    }

    private Map<String, String> workerEnvironment(JobPlacement placement, String host, int port, WorkerSize size) {
        Map<String, String> env = new HashMap<>(System.getenv());
        env.put("WORLD_SIZE", Integer.toString(placement.nnodes() * placement.nprocPerNode()));
        env.put("LOCAL_WORLD_SIZE", Integer.toString(placement.nprocPerNode()));
        env.put("NODE_RANK", Integer.toString(placement.nodeRank()));
        env.put("GROUP_RANK", Integer.toString(placement.nodeRank()));
        env.put("MASTER_ADDR", host);
        env.put("MASTER_PORT", Integer.toString(port));
        env.put("DTRAIN_JOB_ID", placement.jobId());
        env.remove("DTRAIN_JOB_SECRET_FILE");
        env.put("DTRAIN_JOB_SECRET", new String(placement.secret(), StandardCharsets.UTF_8));
        if (placement.nodeId() != null) {
            env.putIfAbsent("DTRAIN_NODE_ID", placement.nodeId());
        }
        env.put("DTRAIN_STORE", "external");
        if (insecureTransport) {
            env.put("DTRAIN_INSECURE_TRANSPORT", "true");
        }
        if (maxRestarts > 0) {
            // a restarted worker must continue from the latest complete checkpoint, not start again
            env.put("DTRAIN_RESUME", "auto");
            env.put("DTRAIN_MAX_RESTARTS", Integer.toString(maxRestarts));
        }
        env.putAll(size.environment());
        for (String kv : extraEnv) {
            int eq = kv.indexOf('=');
            env.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        return env;
    }
}
