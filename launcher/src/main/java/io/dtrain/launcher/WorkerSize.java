package io.dtrain.launcher;

import io.dtrain.common.ByteSizes;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Compute threads and memory of one worker that {@code dtrain launch} starts, and the cores it is pinned to.
 *
 * @param threads       OpenMP/BLAS threads (and the JVM's processor count)
 * @param budgetBytes   the worker's whole memory budget: ND4J's physical-memory cap
 * @param heapBytes     -Xmx, 1/4 of the budget
 * @param offHeapBytes  ND4J's off-heap cap (javacpp maxbytes), 5/8 of the budget; the rest is JVM overhead
 */
record WorkerSize(int threads, long budgetBytes, long heapBytes, long offHeapBytes) {
    static final long MIN_BUDGET = 512L << 20;

    /**
     * @param workers          worker processes on this node
     * @param threadsPerWorker --threads-per-worker, or null: cores / workers
     * @param memoryPerWorker  --memory-per-worker (a byte size), or null: 3/4 of physical memory / workers
     */
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

    /**
     * The worker's environment that sets its compute threads. ND4J M2.1 sizes both its OpenMP pool and BLAS from
     * OMP_NUM_THREADS (measured: setMaxThreads at run time does not shrink the OpenMP pool), so the variable is the
     * one reliable knob.
     */
    Map<String, String> environment() {
        String n = Integer.toString(threads);
        return Map.of("OMP_NUM_THREADS", n, "OPENBLAS_NUM_THREADS", n, "MKL_NUM_THREADS", n);
    }

    String describe() {
        return String.format(Locale.ROOT, "%d compute thread(s), heap %s, ND4J off-heap %s, physical cap %s",
                threads, human(heapBytes), human(offHeapBytes), human(budgetBytes));
    }

    /** {@code taskset -c LIST} for each of {@code workers} workers: consecutive blocks of this process's allowed CPUs. */
    List<List<String>> pinnedPrefixes(int workers) throws IOException {
        List<Integer> allowed = allowedCpus();
        if ((long) threads * workers > allowed.size()) {
            throw new UserError("--pin-cpus: " + workers + " workers x " + threads + " threads need "
                    + threads * workers + " CPUs but only " + allowed.size() + " are available " + allowed
                    + "; lower --threads-per-worker or drop --pin-cpus");
        }
        List<List<String>> prefixes = new ArrayList<>();
        for (int w = 0; w < workers; w++) {
            StringBuilder cpus = new StringBuilder();
            for (int i = 0; i < threads; i++) {
                cpus.append(i == 0 ? "" : ",").append(allowed.get(w * threads + i));
            }
            prefixes.add(List.of("taskset", "-c", cpus.toString()));
        }
        return prefixes;
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

    static String human(long bytes) {
        return bytes >= (1L << 30) ? String.format(Locale.ROOT, "%.1fg", bytes / (double) (1L << 30))
                : (bytes >> 20) + "m";
    }
}
