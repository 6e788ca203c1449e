package io.dtrain.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.bytedeco.javacpp.BytePointer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class SystemSamplerTest {
    /** Recorded nvidia-smi output (also used by the report tests). */
    public static final Path SMI_DATA = Path.of(System.getProperty("dtrain.shared.data", "../../shared/data"), "nvidia-smi");
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void procParsersReadTheKernelFormats() {
        ProcStats.CpuTimes a = ProcStats.parseCpu("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n");
        ProcStats.CpuTimes b = ProcStats.parseCpu("cpu  160 0 70 900 70 0 0 0 0 0\n");
        assertEquals(new ProcStats.CpuTimes(1000, 800, 50), a);
        // 200 jiffies passed: 80 busy, 100 idle, 20 iowait.
        assertEquals(40.0, b.busyPercentSince(a), 1e-9);
        assertEquals(10.0, b.iowaitPercentSince(a), 1e-9);

        ProcStats.MemInfo mem = ProcStats.parseMeminfo("MemTotal:       16384 kB\nMemFree:  1 kB\nMemAvailable:    8192 kB\n");
        assertEquals(new ProcStats.MemInfo(16384L * 1024, 8192L * 1024), mem);
        assertEquals(5120L * 1024, ProcStats.parseRss("Name:\tjava\nVmRSS:\t    5120 kB\n"));

        String netDev = """
                Inter-|   Receive                                                |  Transmit
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
                    lo: 1025799   16087    0    0    0     0          0         0  1025700   16087    0    0    0     0       0          0
                  eth0: 386118875    9029    0    0    0     0          0         0   576068    6289    0    0    0     0       0          0
                """;
        Map<String, ProcStats.Bytes> net = ProcStats.parseNetDev(netDev);
        assertEquals(List.of("lo", "eth0"), new ArrayList<>(net.keySet()));
        assertEquals(new ProcStats.Bytes(386118875, 576068), net.get("eth0"));
        assertEquals(new ProcStats.Bytes(1025799, 1025700), net.get("lo"));

        String disk = """
                   7       0 loop0 5 0 80 0 0 0 0 0 0 0 0 0 0 0 0 0 0
                 254       0 vda 1000 10 20000 300 500 20 8000 400 0 700 700 0 0 0 0 0 0
                 254       1 vda1 900 10 19000 300 500 20 8000 400 0 700 700 0 0 0 0 0 0
                """;
        ProcStats.Bytes d = ProcStats.parseDiskstats(disk, name -> name.equals("vda"));
        assertEquals(new ProcStats.Bytes(20000 * 512L, 8000 * 512L), d);
        assertEquals(ProcStats.CpuTimes.NONE, ProcStats.parseCpu(""));
        assertTrue(ProcStats.parseNetDev("").isEmpty());
    }

    @Test
    void nvidiaSmiCsvParsesWithAndWithoutHeaderAndUnits() throws Exception {
        List<GpuSample> withUnits = parseAll(SMI_DATA.resolve("query-gpu-v100x8.csv"));
        List<GpuSample> bare = parseAll(SMI_DATA.resolve("query-gpu-v100x8-noheader-nounits.csv"));
        assertEquals(160, withUnits.size(), "8 GPUs x 20 samples");
        assertEquals(withUnits, bare);
        GpuSample first = withUnits.get(0);
        assertEquals(new GpuSample(0, "Tesla V100-SXM2-16GB", 93, 15149L << 20, 16160L << 20, 235.65, 64), first);
        GpuSample starved = withUnits.get(4 * 8 + 3); // 14:03:13.250, GPU 3
        assertEquals(3, starved.index());
        assertEquals(1.0, starved.utilPercent());
        assertEquals(57.49, starved.powerWatts());

        NvidiaSmi.Parser p = new NvidiaSmi.Parser();
        GpuSample na = p.parse("2026/11/20 14:03:11.250, 2, Tesla T4, 40 %, 3 %, 100 MiB, 15360 MiB, [N/A], 51").orElseThrow();
        assertTrue(Double.isNaN(na.powerWatts()));
        assertEquals(40.0, na.utilPercent());
        assertTrue(p.parse("").isEmpty());
        assertTrue(p.parse("garbage").isEmpty());
    }

    private static List<GpuSample> parseAll(Path csv) throws Exception {
        NvidiaSmi.Parser p = new NvidiaSmi.Parser();
        List<GpuSample> out = new ArrayList<>();
        for (String line : Files.readAllLines(csv)) {
            p.parse(line).ifPresent(out::add);
        }
        return out;
    }

    /** A stand-in nvidia-smi that checks it was asked for a CSV query loop and prints the recorded output. */
    static Path stubNvidiaSmi(Path dir, Path output) throws Exception {
        Path bin = Files.createDirectories(dir.resolve("bin"));
        Path script = bin.resolve("nvidia-smi");
        Files.writeString(script, """
                #!/bin/sh
                case "$*" in *--query-gpu=*utilization.gpu*--format=csv*-lms*) ;; *) echo "unexpected args: $*" >&2; exit 2;; esac
                cat '%s'
                exec sleep 60
                """.formatted(output.toAbsolutePath()));
        Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwxr-xr-x"));
        return bin;
    }

    @Test
    void samplerWritesOneJsonLinePerIntervalWithGpusFromNvidiaSmi(@TempDir Path tmp) throws Exception {
        Path bin = stubNvidiaSmi(tmp, SMI_DATA.resolve("query-gpu-v100x8.csv"));
        Optional<Path> smi = NvidiaSmi.find(bin + ":" + System.getenv("PATH"));
        assertEquals(Optional.of(bin.resolve("nvidia-smi")), smi);
        assertTrue(NvidiaSmi.find(tmp.toString()).isEmpty());

        Path file = tmp.resolve("run/metrics/system-rank3.jsonl");
        BytePointer offHeap;
        long offHeapBefore;
        long gcBefore = gcMillis();
        long gcForced;
        try (SystemSampler sampler = new SystemSampler(file, 3, 40, () -> 1.5, smi)) {
            long beforeForced = gcMillis();
            System.gc();
            gcForced = gcMillis() - beforeForced;
            Thread.sleep(100);  // JavaCPP frees what the collection found before the off-heap baseline is taken
            offHeapBefore = org.bytedeco.javacpp.Pointer.totalBytes();
            offHeap = new BytePointer(32L << 20);
            long samplesBefore = sampler.samples();
            long deadline = System.currentTimeMillis() + 10_000;
            // Two more readings: the second one's snapshot is surely taken after the collection and the allocation.
            while ((sampler.samples() < Math.max(4, samplesBefore + 2) || sampler.latest().gpus().size() < 8)
                    && System.currentTimeMillis() < deadline) {
                Thread.sleep(20);
            }
            assertTrue(sampler.samples() >= 4, "samples: " + sampler.samples());
        }
        long gcDuringSampling = gcMillis() - gcBefore;
        List<String> lines = Files.readAllLines(file);
        assertTrue(lines.size() >= 4);
        // gc_ms is the collection time of each interval: over all lines it adds up to the time collected while
        // sampling, which includes the forced collection and nothing from before the sampler started.
        double gcSum = 0;
        for (String line : lines) {
            gcSum += JSON.readTree(line).get("gc_ms").asDouble();
        }
        assertTrue(gcSum >= gcForced && gcSum <= gcDuringSampling, "gc_ms add up to " + gcSum + " ms; the forced GC took "
                + gcForced + " ms, all GCs while sampling " + gcDuringSampling + " ms");
        long previousTs = 0;
        for (String line : lines) {
            JsonNode s = JSON.readTree(line);
            assertEquals(3, s.get("rank").asInt());
            assertEquals(1.5, s.get("clock_offset_ms").asDouble());
            assertTrue(s.get("ts").asLong() >= previousTs);
            previousTs = s.get("ts").asLong();
            double cpu = s.get("cpu_pct").asDouble();
            assertTrue(cpu >= 0 && cpu <= 100, line);
            assertTrue(s.get("mem_total_bytes").asLong() > s.get("mem_available_bytes").asLong(), line);
            assertTrue(s.get("mem_available_bytes").asLong() > 0, line);
            assertTrue(s.get("heap_used_bytes").asLong() > 0, line);
            assertTrue(s.get("rss_bytes").asLong() > s.get("heap_used_bytes").asLong() / 4, line);
            assertTrue(s.get("net").has("lo"), line);
        }
        JsonNode last = JSON.readTree(lines.get(lines.size() - 1));
        // At least the 32 MiB still held (other tests' arrays in this JVM may be freed by a GC meanwhile).
        assertTrue(last.get("offheap_bytes").asLong() >= (32L << 20), offHeapBefore + " before; " + last);
        offHeap.close();
        // The newest reading of every GPU: the file's last sample (14:03:20.750).
        JsonNode gpus = last.get("gpus");
        assertEquals(8, gpus.size());
        assertEquals(0, gpus.get(0).get("index").asInt());
        assertEquals(92, gpus.get(0).get("util_pct").asDouble());
        assertEquals(15209L << 20, gpus.get(0).get("mem_used_bytes").asLong());
        assertEquals(16160L << 20, gpus.get(0).get("mem_total_bytes").asLong());
        assertEquals(231.09, gpus.get(0).get("power_w").asDouble());
        assertEquals(64, gpus.get(0).get("temp_c").asDouble());
        assertEquals(88, gpus.get(7).get("util_pct").asDouble());
        assertFalse(lines.get(0).contains("NaN"));
    }

    /** Collection time of every collector of this JVM so far, as the sampler sums it. */
    private static long gcMillis() {
        long total = 0;
        for (java.lang.management.GarbageCollectorMXBean b : java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()) {
            total += Math.max(0, b.getCollectionTime());
        }
        return total;
    }

    @Test
    void withoutNvidiaSmiThereAreNoGpus(@TempDir Path tmp) throws Exception {
        Path file = tmp.resolve("system-rank0.jsonl");
        try (SystemSampler sampler = new SystemSampler(file, 0, 1000, () -> 0, Optional.empty())) {
            SystemSample s = sampler.sampleOnce();
            assertTrue(s.gpus().isEmpty());
            assertEquals(0.0, s.clockOffsetMs());
        }
        JsonNode line = JSON.readTree(Files.readAllLines(file).get(0));
        assertEquals(0, line.get("gpus").size());
        assertTrue(Set.of("ts", "cpu_pct", "proc_cpu_pct", "iowait_pct", "offheap_bytes", "physical_bytes",
                "net_rx_bytes_per_s", "disk_write_bytes_per_s").stream().allMatch(line::has), line.toString());
    }
}
