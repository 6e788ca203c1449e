package io.dtrain.parallel.bench;

import io.dtrain.common.ByteSizes;
import io.dtrain.common.UserFacingException;
import io.dtrain.parallel.ElementType;
import io.dtrain.parallel.FlatBuffer;
import io.dtrain.parallel.WorldConfig;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.ReduceOp;
import io.dtrain.parallel.spawn.WorkerJvm;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * AllReduce benchmark like nccl-tests: {@link #launch} starts {@code world} worker processes on this host (or spread
 * over network namespaces standing for hosts); each runs {@link #main} as one rank, and rank 0 prints per size the
 * median time, algbw = bytes / time, busbw = algbw x 2(n-1)/n (the bandwidth each link carries in a ring) and the CPU
 * the transport costs: CPU seconds of all ranks and of every host's media driver over the timed calls, per GB the
 * ranks sent (each rank sends 2(n-1)/n of the buffer per call), and the drivers' part of it alone.
 */
public final class AllReduceBench {
    /**
     * Untimed calls per size first: as many as move 64 MiB, at least 5 (nccl-tests' default) and at most 100, the
     * same rule as benchmarks/allreduce/allreduce_reference.py's for gloo and Open MPI, so that small sizes (the first
     * of a run most of all) are not timed while the JIT, caches and scheduler still settle, for any system.
     */
    public static int warmUpCalls(long bytes) {
        return (int) Math.max(5, Math.min(100, (64L << 20) / Math.max(1, bytes)));
    }

    private AllReduceBench() {
    }

    /**
     * Parses a comma-separated list of byte sizes, e.g. "1MiB,16MiB,64MiB,256MiB,4KiB,1000", each as
     * {@link ByteSizes#parse} reads a size (KiB/MiB/GiB binary, KB/MB/GB decimal).
     */
    public static long[] parseSizes(String sizes) {
        return Arrays.stream(sizes.split(",")).map(String::trim).filter(s -> !s.isEmpty())
                .mapToLong(s -> ByteSizes.parse(s, "--sizes")).toArray();
    }

    /** Starts the workers on this host, forwards rank 0's table to {@code out}; returns 0 if every worker succeeded. */
    public static int launch(int world, long[] sizes, String transport, boolean insecureTransport, int iterations,
                             PrintStream out)
            throws IOException, InterruptedException {
        return launch(world, sizes, transport, insecureTransport, iterations, List.of(), out);
    }

    /**
     * A "host" made of a network namespace (the benchmarks' stand-in for another machine, see
     * benchmarks/allreduce/netns.sh): its name and the address of its interface towards the other hosts.
     */
    public record NamespaceHost(String namespace, String address) {
        /** {@code NAME@ADDRESS}. */
        public static NamespaceHost parse(String spec) {
            int at = spec.indexOf('@');
            if (at <= 0 || at == spec.length() - 1) {
                throw new UserFacingException("--netns: '" + spec + "' is not NAMESPACE@ADDRESS");
            }
            return new NamespaceHost(spec.substring(0, at), spec.substring(at + 1));
        }
    }

    /**
     * As {@link #launch(int, long[], String, boolean, int, PrintStream)}, with the ranks spread in blocks over
     * {@code hosts} (rank r in host r x hosts / world; none: all on this host): each host's ranks run under
     * {@code ip netns exec} with their own node id and media driver, the store on the first host's address.
     */
    public static int launch(int world, long[] sizes, String transport, boolean insecureTransport, int iterations,
                             List<NamespaceHost> hosts, PrintStream out)
            throws IOException, InterruptedException {
        if (world < 1) {
            throw new UserFacingException("--world must be >= 1, got " + world);
        }
        if (hosts.size() > world) {
            throw new UserFacingException("--netns names " + hosts.size() + " hosts for " + world + " ranks");
        }
        long largest = Arrays.stream(sizes).max().orElse(0);
        String memory = Math.max(256, 3 * largest / (1 << 20) + 128) + "m";
        Map<String, String> env = WorkerJvm.oneHostJob("bench", world);
        env.put("DTRAIN_TRANSPORT", transport);
        env.put("DTRAIN_INSECURE_TRANSPORT", Boolean.toString(insecureTransport));
        env.put("DTRAIN_DRIVER_IDLE_EXIT", "2");
        env.put("DTRAIN_RENDEZVOUS_TIMEOUT", "60s");
        List<String> args = new ArrayList<>(List.of(Integer.toString(iterations)));
        for (long size : sizes) {
            args.add(Long.toString(size));
        }
        if (!hosts.isEmpty()) {
            env.put("MASTER_ADDR", hosts.get(0).address());
        }
        List<Process> processes = new ArrayList<>();
        for (int rank = 0; rank < world; rank++) {
            WorkerJvm worker = WorkerJvm.of(AllReduceBench.class)
                    .jvmOptions(List.of("-Xmx" + memory, "-XX:MaxDirectMemorySize=" + memory))
                    .args(args).environment(env);
            int localRank = rank;
            if (!hosts.isEmpty()) {
                int host = rank * hosts.size() / world;
                localRank = rank - (host * world + hosts.size() - 1) / hosts.size();
                NamespaceHost h = hosts.get(host);
                String jobDir = "/dev/shm/dtrain-" + System.getProperty("user.name") + "-" + env.get("DTRAIN_JOB_ID")
                        + "-" + h.namespace();
                worker.prefix(List.of("ip", "netns", "exec", h.namespace()))
                        .environment(Map.of("DTRAIN_NODE_ID", h.namespace(), "DTRAIN_ADVERTISE_ADDR", h.address(),
                                "DTRAIN_AERON_DIR", jobDir + "/aeron"));
            }
            ProcessBuilder builder = worker.processBuilder(rank, localRank);
            builder.redirectError(ProcessBuilder.Redirect.INHERIT);
            builder.redirectOutput(rank == 0 ? ProcessBuilder.Redirect.PIPE : ProcessBuilder.Redirect.DISCARD);
            processes.add(builder.start());
        }
        processes.get(0).getInputStream().transferTo(out);
        int failed = 0;
        for (Process p : processes) {
            if (p.waitFor() != 0) {
                failed++;
            }
        }
        return failed == 0 ? 0 : 1;
    }

    private static long processCpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    /** The host's media driver's CPU time so far (user + system, from /proc), 0 if there is none. */
    private static long driverCpuNanos() {
        WorldConfig config = WorldConfig.fromEnvironment(System.getenv());
        return io.dtrain.parallel.transport.MediaDriverProcess.pid(config.resolvedAeronDir()).stream().map(pid -> {
            try {
                String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/" + pid + "/stat"));
                String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                return (Long.parseLong(fields[11]) + Long.parseLong(fields[12])) * 10_000_000L; // 100 ticks/s
            } catch (IOException | RuntimeException e) {
                return 0L;
            }
        }).findFirst().orElse(0L);
    }

    /** One rank: {@code AllReduceBench ITERATIONS SIZE_BYTES...}, configured by the environment. */
    public static void main(String[] args) {
        int iterations = Integer.parseInt(args[0]);
        WorldConfig config = WorldConfig.fromEnvironment(System.getenv());
        int localRank = config.localRank();
        try (ProcessGroup world = ProcessGroup.init(config)) {
            int n = world.size();
            if (world.rank() == 0) {
                System.out.printf(Locale.ROOT, "# dtrain allreduce: %d ranks, float32 SUM, %d iterations (median) after 5-100 warm-up calls (64 MiB's worth), transport %s%s%n",
                        n, iterations, System.getenv().getOrDefault("DTRAIN_TRANSPORT", "auto"),
                        "true".equals(System.getenv("DTRAIN_INSECURE_TRANSPORT")) ? " (udp not authenticated)" : "");
                System.out.printf(Locale.ROOT, "%14s %12s %12s %12s %14s %16s%n", "size (B)", "time (ms)", "algbw (GB/s)",
                        "busbw (GB/s)", "CPU (s/GB)", "driver (s/GB)");
            }
            for (int a = 1; a < args.length; a++) {
                long bytes = Long.parseLong(args[a]) / 4 * 4;
                // As a training step's gradients: in shared memory within a host, so AllReduce needs no copies.
                FlatBuffer flat = world.allocateBuffer(bytes / 4, ElementType.FLOAT32);
                org.agrona.concurrent.UnsafeBuffer values = new org.agrona.concurrent.UnsafeBuffer(flat.address(), (int) bytes);
                for (int i = 0; i < bytes / 4; i++) {
                    values.putFloat(i * 4, 1e-3f * (i % 1000));
                }
                for (int w = warmUpCalls(bytes); w > 0; w--) {
                    world.allReduce(flat, ReduceOp.SUM);
                }
                double[] seconds = new double[iterations];
                long cpu0 = processCpuNanos();
                // The first rank of each host reads its host's driver, so every driver is counted once.
                boolean readsDriver = localRank == 0;
                long driver0 = readsDriver ? driverCpuNanos() : 0;
                for (int it = 0; it < iterations; it++) {
                    world.barrier();
                    long t0 = System.nanoTime();
                    world.allReduce(flat, ReduceOp.SUM);
                    seconds[it] = (System.nanoTime() - t0) / 1e9;
                }
                // All ranks' CPU over the timed calls (and every host's driver, once), summed after the timing.
                ByteBuffer cpu = ByteBuffer.allocateDirect(16).order(ByteOrder.nativeOrder());
                double driverSeconds = readsDriver ? (driverCpuNanos() - driver0) / 1e9 : 0;
                cpu.putDouble(0, (processCpuNanos() - cpu0) / 1e9 + driverSeconds);
                cpu.putDouble(8, driverSeconds);
                world.allReduce(FlatBuffer.of(cpu, ElementType.FLOAT64), ReduceOp.SUM);
                double sentGb = (double) iterations * n * 2.0 * (n - 1) / n * bytes / 1e9;
                Arrays.sort(seconds);
                double median = seconds[iterations / 2];
                double algbw = bytes / median / 1e9;
                double busbw = algbw * 2.0 * (n - 1) / n;
                if (world.rank() == 0) {
                    System.out.printf(Locale.ROOT, "%14d %12.3f %12.3f %12.3f %14.3f %16.3f%n", bytes, median * 1e3, algbw,
                            busbw, n == 1 ? 0 : cpu.getDouble(0) / sentGb, n == 1 ? 0 : cpu.getDouble(8) / sentGb);
                    System.out.flush();
                }
            }
        }
        System.exit(0);
    }
}
