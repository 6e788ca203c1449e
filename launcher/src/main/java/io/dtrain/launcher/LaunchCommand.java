package io.dtrain.launcher;

import io.dtrain.common.ByteSizes;
import io.dtrain.parallel.WorldConfig;
import io.dtrain.parallel.rendezvous.RendezvousServer;
import io.dtrain.parallel.transport.MediaDriverProcess;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.Writer;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

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
    private static final int TAIL_LINES = 40;
    private static final Pattern WARNING_OR_ERROR = Pattern.compile(
            "(?i)(\\bWARN|\\bERROR\\b|\\berror:|exception|\\bFATAL\\b|dtrain thread dump)");

    /** Warnings every ND4J process prints at start; repeated by every rank they only hide the real ones. */
    private static final Pattern KNOWN_NOISE = Pattern.compile("Duplicate TF op mapping found");

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

    /** One worker process and what it printed. */
    private static final class Worker {
        final int rank;
        final int localRank;
        final Process process;
        final ArrayDeque<String> tail = new ArrayDeque<>();
        Thread pump;

        Worker(int rank, int localRank, Process process) {
            this.rank = rank;
            this.localRank = localRank;
            this.process = process;
        }

        synchronized void remember(String line) {
            if (tail.size() == TAIL_LINES) {
                tail.removeFirst();
            }
            tail.addLast(line);
        }

        synchronized List<String> lastLines() {
            return new ArrayList<>(tail);
        }
    }

    @Override
    public Integer call() throws Exception {
        PrintStream out = System.out;
        PrintStream err = System.err;
        validate();
        int worldSize = nnodes * nprocPerNode;
        byte[] secret = readOrCreateSecret();
        String job = jobId != null ? jobId : defaultJobId(secret);
        String host = rdzv == null ? "127.0.0.1" : rdzv.substring(0, rdzv.lastIndexOf(':'));
        int port = rdzv == null ? 0 : Integer.parseInt(rdzv.substring(rdzv.lastIndexOf(':') + 1));
        WorkerSize size = WorkerSize.of(nprocPerNode, threadsPerWorker, memoryPerWorker);

        RendezvousServer store = null;
        List<Worker> workers = new ArrayList<>();
        Thread stopOnExit = new Thread(() -> workers.forEach(w -> w.process.destroyForcibly()), "dtrain-launch-stop");
        try {
            if (nodeRank == 0) {
                // Wildcard bind with --rdzv so that the other nodes reach it; loopback for a one-node job.
                InetSocketAddress bind = rdzv == null ? new InetSocketAddress("127.0.0.1", 0) : new InetSocketAddress(port);
                store = RendezvousServer.start(bind, job, secret);
                port = store.port();
            }
            Map<String, String> baseEnv = workerEnvironment(worldSize, host, port, job, secret, size);
            WorldConfig driverConfig = WorldConfig.fromEnvironment(withRank(baseEnv, nodeRank * nprocPerNode, 0));
            if (!driverConfig.externalDriver()) {
                int idleExit = Integer.parseInt(baseEnv.getOrDefault("DTRAIN_DRIVER_IDLE_EXIT", "10"));
                MediaDriverProcess.ensureRunning(driverConfig.resolvedAeronDir(), idleExit, Duration.ofSeconds(30));
            }
            out.printf(Locale.ROOT, "launch: job %s, ranks %d-%d of %d on this node (node %d of %d), store %s:%d; "
                            + "each worker: %s%n", job, nodeRank * nprocPerNode, (nodeRank + 1) * nprocPerNode - 1,
                    worldSize, nodeRank, nnodes, host, port, size.describe());
            if (logDir != null) {
                Files.createDirectories(logDir);
            }
            Runtime.getRuntime().addShutdownHook(stopOnExit);
            List<String> jvmOptions = jvmOptions();
            List<int[]> cpuSets = pinCpus ? cpuSets(size.threads()) : null;
            for (int local = 0; local < nprocPerNode; local++) {
                int rank = nodeRank * nprocPerNode + local;
                List<String> cmd = new ArrayList<>();
                if (cpuSets != null) {
                    cmd.add("taskset");
                    cmd.add("-c");
                    cmd.add(cpuList(cpuSets.get(local)));
                }
                cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
                cmd.addAll(jvmOptions);
                cmd.addAll(size.jvmOptions());
                cmd.add("-Ddtrain.rank=" + rank); // lets ps / tests tell the workers apart
                if (System.getProperty("dtrain.home") != null) {
                    cmd.add("-Ddtrain.home=" + System.getProperty("dtrain.home"));
                }
                cmd.add("-cp");
                cmd.add(System.getProperty("java.class.path"));
                cmd.add(Main.class.getName());
                cmd.addAll(command);
                ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
                pb.environment().putAll(withRank(baseEnv, rank, local));
                Worker w = new Worker(rank, local, pb.start());
                w.pump = pump(w, out);
                workers.add(w);
            }
            return supervise(workers, out, err);
        } finally {
            stopAll(workers);
            for (Worker w : workers) {
                w.pump.join(2_000);
            }
            try {
                Runtime.getRuntime().removeShutdownHook(stopOnExit);
            } catch (IllegalStateException | IllegalArgumentException e) {
                // the JVM is already shutting down, or the hook was never added
            }
            if (store != null) {
                store.close();
            }
        }
    }

    /** Waits for all workers; on the first failure stops the others and reports it. */
    private int supervise(List<Worker> workers, PrintStream out, PrintStream err) throws InterruptedException {
        LinkedBlockingQueue<Worker> exited = new LinkedBlockingQueue<>();
        for (Worker w : workers) {
            w.process.onExit().thenRun(() -> exited.add(w));
        }
        for (int done = 0; done < workers.size(); done++) {
            Worker w = exited.take();
            int code = w.process.exitValue();
            if (code == 0) {
                continue;
            }
            long t0 = System.nanoTime();
            stopAll(workers);
            w.pump.join(2_000);
            StringBuilder msg = new StringBuilder(String.format(Locale.ROOT,
                    "dtrain launch: rank %d (local rank %d, pid %d) failed with exit code %d%s; stopped the other %d "
                            + "worker(s) of this node in %.1f s.%nLast lines of rank %d's output:%n", w.rank, w.localRank,
                    w.process.pid(), code, describeExit(code), workers.size() - 1, (System.nanoTime() - t0) / 1e9, w.rank));
            for (String line : w.lastLines()) {
                msg.append("  [rank ").append(w.rank).append("] ").append(line).append(System.lineSeparator());
            }
            if (logDir != null) {
                msg.append("Full logs: ").append(logDir.toAbsolutePath()).append(System.lineSeparator());
            }
            err.print(msg);
            err.flush();
            return code > 0 && code < 128 ? code : 1;
        }
        out.printf(Locale.ROOT, "launch: all %d worker(s) of this node finished%n", workers.size());
        return 0;
    }

    private static String describeExit(int code) {
        if (code > 128 && code < 128 + 32) {
            int signal = code - 128;
            String name = switch (signal) {
                case 9 -> "SIGKILL";
                case 15 -> "SIGTERM";
                case 6 -> "SIGABRT";
                case 11 -> "SIGSEGV";
                case 2 -> "SIGINT";
                default -> "signal " + signal;
            };
            return " (killed by " + name + (signal == 9 ? ": out of memory, or killed from outside?" : "") + ")";
        }
        return "";
    }

    /** SIGTERM to every live worker, then SIGKILL to those still running after the grace period. */
    private void stopAll(List<Worker> workers) {
        workers.forEach(w -> w.process.destroy());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(stopGraceSeconds);
        for (Worker w : workers) {
            try {
                long left = deadline - System.nanoTime();
                if (left <= 0 || !w.process.waitFor(left, TimeUnit.NANOSECONDS)) {
                    w.process.destroyForcibly();
                    w.process.waitFor(5, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                w.process.destroyForcibly();
            }
        }
    }

    /** Prefixes each line with the rank; rank 0 in full, others warnings/errors (and their stack traces) only. */
    private Thread pump(Worker w, PrintStream out) throws IOException {
        Writer log = logDir == null ? null : Files.newBufferedWriter(logDir.resolve("rank" + w.rank + ".log"), StandardCharsets.UTF_8);
        boolean everything = allRanksOutput || w.rank == 0;
        String prefix = "[rank " + w.rank + "] ";
        Thread t = new Thread(() -> {
            boolean printingError = false;
            try (InputStream in = w.process.getInputStream();
                 BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                for (String line; (line = reader.readLine()) != null; ) {
                    w.remember(line);
                    if (log != null) {
                        log.write(line);
                        log.write('\n');
                        log.flush();
                    }
                    boolean continuation = printingError && (line.startsWith("\t") || line.startsWith(" ")
                            || line.startsWith("Caused by") || line.isEmpty());
                    printingError = (WARNING_OR_ERROR.matcher(line).find() && !KNOWN_NOISE.matcher(line).find())
                            || continuation;
                    if (everything || printingError) {
                        out.println(prefix + line);
                    }
                }
            } catch (IOException e) {
                // the worker is gone; what it printed so far is kept
            } finally {
                if (log != null) {
                    try {
                        log.close();
                    } catch (IOException ignored) {
                        // best effort
                    }
                }
            }
        }, "dtrain-launch-output-rank" + w.rank);
        t.setDaemon(true);
        t.start();
        return t;
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
        // ND4J M2.1 sizes both its OpenMP pool and BLAS from OMP_NUM_THREADS (measured: setMaxThreads at run time
        // does not shrink the OpenMP pool), so the variable is the one reliable knob.
        env.put("OMP_NUM_THREADS", Integer.toString(size.threads()));
        env.put("OPENBLAS_NUM_THREADS", Integer.toString(size.threads()));
        env.put("MKL_NUM_THREADS", Integer.toString(size.threads()));
        for (String kv : extraEnv) {
            int eq = kv.indexOf('=');
            env.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        return env;
    }

    private static Map<String, String> withRank(Map<String, String> env, int rank, int localRank) {
        Map<String, String> e = new HashMap<>(env);
        e.put("RANK", Integer.toString(rank));
        e.put("LOCAL_RANK", Integer.toString(localRank));
        return e;
    }

    /** The JVM options packaged into the jar from jvm.properties (the same list bin/dtrain uses). */
    static List<String> jvmOptions() throws IOException {
        try (InputStream in = LaunchCommand.class.getResourceAsStream("/dtrain-jvm.options")) {
            if (in == null) {
                throw new IllegalStateException("dtrain-jvm.options is missing from the class path; rebuild the launcher jar");
            }
            String text = new String(in.readAllBytes(), StandardCharsets.UTF_8).strip();
            if (text.contains("${")) {
                throw new IllegalStateException("dtrain-jvm.options was not filtered by the build: " + text);
            }
            return text.isEmpty() ? List.of() : List.of(text.split("\\s+"));
        }
    }

    /** Consecutive blocks of this process's allowed CPUs, one block of {@code threads} per local worker. */
    private List<int[]> cpuSets(int threads) throws IOException {
        List<Integer> allowed = allowedCpus();
        if ((long) threads * nprocPerNode > allowed.size()) {
            throw new UserError("--pin-cpus: " + nprocPerNode + " workers x " + threads + " threads need "
                    + threads * nprocPerNode + " CPUs but only " + allowed.size() + " are available " + allowed
                    + "; lower --threads-per-worker or drop --pin-cpus");
        }
        List<int[]> sets = new ArrayList<>();
        for (int w = 0; w < nprocPerNode; w++) {
            int[] set = new int[threads];
            for (int i = 0; i < threads; i++) {
                set[i] = allowed.get(w * threads + i);
            }
            sets.add(set);
        }
        return sets;
    }

    private static List<Integer> allowedCpus() throws IOException {
        List<Integer> cpus = new ArrayList<>();
        Path status = Path.of("/proc/self/status");
        if (Files.isReadable(status)) {
            for (String line : Files.readAllLines(status)) {
                if (line.startsWith("Cpus_allowed_list:")) {
                    for (String part : line.substring(line.indexOf(':') + 1).trim().split(",")) {
                        String[] range = part.trim().split("-");
                        int from = Integer.parseInt(range[0]);
                        int to = range.length > 1 ? Integer.parseInt(range[1]) : from;
                        for (int c = from; c <= to; c++) {
                            cpus.add(c);
                        }
                    }
                }
            }
        }
        if (cpus.isEmpty()) {
            for (int c = 0; c < Runtime.getRuntime().availableProcessors(); c++) {
                cpus.add(c);
            }
        }
        return cpus;
    }

    private static String cpuList(int[] cpus) {
        StringBuilder sb = new StringBuilder();
        for (int c : cpus) {
            sb.append(sb.length() == 0 ? "" : ",").append(c);
        }
        return sb.toString();
    }

    /**
     * Compute threads and memory of one worker.
     *
     * @param threads       OpenMP/BLAS threads (and the JVM's processor count)
     * @param budgetBytes   the worker's whole memory budget: ND4J's physical-memory cap
     * @param heapBytes     -Xmx, 1/4 of the budget
     * @param offHeapBytes  ND4J's off-heap cap (javacpp maxbytes), 5/8 of the budget; the rest is JVM overhead
     */
    record WorkerSize(int threads, long budgetBytes, long heapBytes, long offHeapBytes) {
        static final long MIN_BUDGET = 512L << 20;

        static WorkerSize of(int workers, Integer threadsPerWorker, String memoryPerWorker) {
            int cores = Runtime.getRuntime().availableProcessors();
            int threads = threadsPerWorker != null ? threadsPerWorker : Math.max(1, cores / workers);
            if (threads < 1) {
                throw new UserError("--threads-per-worker must be >= 1, got " + threads);
            }
            long budget;
            if (memoryPerWorker != null) {
                budget = ByteSizes.parse(memoryPerWorker, "--memory-per-worker");
            } else {
                long physical = ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                        .getTotalMemorySize();
                budget = Math.max(MIN_BUDGET, physical / 4 * 3 / workers);
            }
            if (budget < MIN_BUDGET) {
                throw new UserError("--memory-per-worker " + memoryPerWorker + " is below the minimum of 512m");
            }
            long mib = 1L << 20;
            long heap = Math.max(128 * mib, budget / 4 / mib * mib);
            long offHeap = budget / 8 * 5 / mib * mib;
            return new WorkerSize(threads, budget, heap, offHeap);
        }

        List<String> jvmOptions() {
            // Later -D and -X options win over the packaged defaults.
            return List.of("-Xmx" + (heapBytes >> 20) + "m",
                    "-Dorg.bytedeco.javacpp.maxbytes=" + offHeapBytes,
                    "-Dorg.bytedeco.javacpp.maxphysicalbytes=" + budgetBytes,
                    "-XX:ActiveProcessorCount=" + threads);
        }

        String describe() {
            return String.format(Locale.ROOT, "%d compute thread(s), heap %s, ND4J off-heap %s, physical cap %s",
                    threads, human(heapBytes), human(offHeapBytes), human(budgetBytes));
        }

        static String human(long bytes) {
            return bytes >= (1L << 30) ? String.format(Locale.ROOT, "%.1fg", bytes / (double) (1L << 30))
                    : (bytes >> 20) + "m";
        }
    }
}
