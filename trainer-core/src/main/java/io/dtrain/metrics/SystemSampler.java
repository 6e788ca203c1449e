package io.dtrain.metrics;

import org.bytedeco.javacpp.Pointer;

import java.io.BufferedWriter;
import java.io.IOException;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryUsage;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.DoubleSupplier;
import java.util.logging.Logger;

/**
 * Samples the host and this JVM every {@code intervalMs} on a daemon thread (SageMaker Debugger's system
 * metrics) and appends one {@link SystemSample} per reading to {@code metrics/system-rank<r>.jsonl}, flushed at
 * once so a crashed run keeps its samples. Sources: /proc (stat, meminfo, net/dev, diskstats, self/status),
 * the JVM's management beans, JavaCPP's allocation counters, and nvidia-smi when it is on the PATH.
 */
public final class SystemSampler implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(SystemSampler.class.getName());
    private static final Path PROC = Path.of("/proc");

    private final int rank;
    private final int intervalMs;
    private final DoubleSupplier clockOffsetMs;
    private final BufferedWriter out;
    private final NvidiaSmi gpus;
    private final Thread thread;
    private final com.sun.management.OperatingSystemMXBean os;
    /** Counted down by close: wakes the thread without interrupting it (an interrupt would close the file's channel). */
    private final java.util.concurrent.CountDownLatch stop = new java.util.concurrent.CountDownLatch(1);
    private volatile SystemSample latest;
    private long samples;

    private Snapshot previous;

    /** Counters that only make sense as differences between two readings. */
    private record Snapshot(long nanos, ProcStats.CpuTimes cpu, long processCpuNanos, long gcMillis,
                            Map<String, ProcStats.Bytes> net, ProcStats.Bytes disk) {
    }

    /**
     * Starts sampling into {@code file}.
     *
     * @param nvidiaSmi the nvidia-smi executable, or empty for no GPU metrics
     */
    public SystemSampler(Path file, int rank, int intervalMs, DoubleSupplier clockOffsetMs, Optional<Path> nvidiaSmi)
            throws IOException {
        if (intervalMs <= 0) {
            throw new IllegalArgumentException("intervalMs must be > 0, got " + intervalMs);
        }
        this.rank = rank;
        this.intervalMs = intervalMs;
        this.clockOffsetMs = clockOffsetMs;
        this.os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        Files.createDirectories(file.toAbsolutePath().getParent());
        this.out = Files.newBufferedWriter(file, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                StandardOpenOption.APPEND);
        NvidiaSmi smi = null;
        if (nvidiaSmi.isPresent()) {
            try {
                smi = NvidiaSmi.start(nvidiaSmi.get(), intervalMs);
            } catch (IOException e) {
                LOG.warning("cannot start " + nvidiaSmi.get() + " (" + e.getMessage() + "): no GPU metrics");
            }
        }
        this.gpus = smi;
        this.previous = snapshot();
        this.thread = new Thread(this::loop, "system-sampler-rank" + rank);
        thread.setDaemon(true);
        thread.start();
    }

    /** nvidia-smi from this process's PATH, if any. */
    public static Optional<Path> nvidiaSmiOnPath() {
        return NvidiaSmi.find(System.getenv("PATH"));
    }

    /** The newest reading, or null before the first interval has passed. */
    public SystemSample latest() {
        return latest;
    }

    /** Readings written so far. */
    public synchronized long samples() {
        return samples;
    }

    private void loop() {
        long next = System.nanoTime();
        while (true) {
            next += intervalMs * 1_000_000L;
            long sleep = next - System.nanoTime();
            if (sleep <= 0) {
                next = System.nanoTime(); // fell behind (a stalled host): do not fire a burst
            }
            try {
                if (stop.await(Math.max(0, sleep), java.util.concurrent.TimeUnit.NANOSECONDS)) {
                    return;
                }
            } catch (InterruptedException e) {
                return;
            }
            try {
                sampleOnce();
            } catch (IOException | RuntimeException e) {
                LOG.warning("system sampler of rank " + rank + " stopped: " + e);
                return;
            }
        }
    }

    /** Takes one reading now and writes it (the thread calls this every interval). */
    synchronized SystemSample sampleOnce() throws IOException {
        Snapshot now = snapshot();
        SystemSample s = toSample(previous, now);
        previous = now;
        out.write(s.toJson());
        out.newLine();
        out.flush();
        latest = s;
        samples++;
        return s;
    }

    private Snapshot snapshot() {
        long gc = 0;
        for (GarbageCollectorMXBean b : ManagementFactory.getGarbageCollectorMXBeans()) {
            gc += Math.max(0, b.getCollectionTime());
        }
        return new Snapshot(System.nanoTime(), ProcStats.parseCpu(ProcStats.read(PROC.resolve("stat"))),
                os.getProcessCpuTime(), gc, ProcStats.parseNetDev(ProcStats.read(PROC.resolve("net/dev"))),
                ProcStats.parseDiskstats(ProcStats.read(PROC.resolve("diskstats")), ProcStats::isPhysicalDisk));
    }

    private SystemSample toSample(Snapshot a, Snapshot b) {
        double seconds = (b.nanos() - a.nanos()) / 1e9;
        int cpus = Runtime.getRuntime().availableProcessors();
        double processCpu = b.processCpuNanos() < 0 || seconds <= 0 ? Double.NaN
                : 100.0 * (b.processCpuNanos() - a.processCpuNanos()) / 1e9 / seconds / cpus;
        Map<String, SystemSample.Rates> net = new LinkedHashMap<>();
        double rx = 0;
        double tx = 0;
        for (Map.Entry<String, ProcStats.Bytes> e : b.net().entrySet()) {
            ProcStats.Bytes before = a.net().get(e.getKey());
            if (before == null || seconds <= 0) {
                continue;
            }
            SystemSample.Rates r = new SystemSample.Rates((e.getValue().read() - before.read()) / seconds,
                    (e.getValue().written() - before.written()) / seconds);
            net.put(e.getKey(), r);
            if (!e.getKey().equals("lo")) {
                rx += r.rxBytesPerSec();
                tx += r.txBytesPerSec();
            }
        }
        ProcStats.MemInfo mem = ProcStats.parseMeminfo(ProcStats.read(PROC.resolve("meminfo")));
        MemoryUsage heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage();
        List<GpuSample> gpuReadings = gpus == null ? List.of() : gpus.latest();
        return new SystemSample(System.currentTimeMillis(), rank, clockOffsetMs.getAsDouble(),
                b.cpu().busyPercentSince(a.cpu()), b.cpu().iowaitPercentSince(a.cpu()), processCpu, cpus,
                mem.totalBytes(), mem.availableBytes(), ProcStats.parseRss(ProcStats.read(PROC.resolve("self/status"))),
                heap.getUsed(), heap.getMax(), Pointer.totalBytes(), Pointer.physicalBytes(),
                b.gcMillis() - a.gcMillis(), net, seconds <= 0 ? Double.NaN : rx, seconds <= 0 ? Double.NaN : tx,
                seconds <= 0 ? Double.NaN : (b.disk().read() - a.disk().read()) / seconds,
                seconds <= 0 ? Double.NaN : (b.disk().written() - a.disk().written()) / seconds, gpuReadings);
    }

    @Override
    public void close() throws IOException {
        stop.countDown();
        try {
            thread.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (gpus != null) {
            gpus.close();
        }
        synchronized (this) {
            out.close();
        }
    }
}
