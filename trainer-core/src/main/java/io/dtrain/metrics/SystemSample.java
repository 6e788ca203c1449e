package io.dtrain.metrics;

import io.dtrain.metrics.SystemFields.Gpu;
import io.dtrain.metrics.SystemFields.Net;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.dtrain.metrics.SystemFields.*;

/**
 * One reading of the system sampler: one JSON line of {@code metrics/system-rank<r>.jsonl}, fields named by
 * {@link SystemFields}. Rates are over the interval since the previous reading; percentages of CPU are of all cores of
 * the host (0..100). Unknown values (no /proc, first reading) are NaN / -1 and written as null.
 *
 * @param wallMillis        wall-clock time of the reading (this host's clock)
 * @param rank              the rank that took it
 * @param clockOffsetMs     this host's clock minus rank 0's, measured at rendezvous (0 for one process):
 *                          subtract it to put all ranks on rank 0's timeline
 * @param cpuPercent        host CPU busy (user + system + irq + steal)
 * @param iowaitPercent     host CPU idle waiting for I/O
 * @param processCpuPercent this JVM's CPU time over the interval, as a share of all cores
 * @param cpus              cores the JVM sees
 * @param memTotalBytes     host memory (MemTotal)
 * @param memAvailableBytes host memory available without swapping (MemAvailable)
 * @param rssBytes          this process's resident set
 * @param heapUsedBytes     JVM heap in use
 * @param heapMaxBytes      JVM heap limit (-Xmx)
 * @param offHeapBytes      ND4J/JavaCPP off-heap bytes allocated ({@code Pointer.totalBytes()})
 * @param physicalBytes     JavaCPP's view of the process's physical memory ({@code Pointer.physicalBytes()})
 * @param gcMillis          garbage-collection time during the interval
 * @param net               bytes/s received and sent per network interface, loopback included
 * @param netRxBytesPerSec  received bytes/s over all interfaces but loopback
 * @param netTxBytesPerSec  sent bytes/s over all interfaces but loopback
 * @param diskReadBytesPerSec  bytes/s read from whole disks
 * @param diskWriteBytesPerSec bytes/s written to whole disks
 * @param gpus              newest nvidia-smi reading of each GPU (empty without nvidia-smi)
 */
public record SystemSample(long wallMillis, int rank, double clockOffsetMs, double cpuPercent, double iowaitPercent,
                           double processCpuPercent, int cpus, long memTotalBytes, long memAvailableBytes,
                           long rssBytes, long heapUsedBytes, long heapMaxBytes, long offHeapBytes,
                           long physicalBytes, double gcMillis, Map<String, Rates> net, double netRxBytesPerSec,
                           double netTxBytesPerSec, double diskReadBytesPerSec, double diskWriteBytesPerSec,
                           List<GpuSample> gpus) {

    /** Received and sent bytes per second of one interface. */
    public record Rates(double rxBytesPerSec, double txBytesPerSec) {
    }

    /** The sample's JSON line; measurements to six significant digits, non-finite ones null ({@link JsonLines}). */
    public String toJson() {
        Map<String, Object> netJson = new LinkedHashMap<>();
        for (Map.Entry<String, Rates> e : net.entrySet()) {
            Map<String, Object> rates = JsonLines.record();
            rates.put(Net.RX_BYTES_PER_S, JsonLines.measured(e.getValue().rxBytesPerSec()));
            rates.put(Net.TX_BYTES_PER_S, JsonLines.measured(e.getValue().txBytesPerSec()));
            netJson.put(e.getKey(), rates);
        }
        List<Map<String, Object>> gpuJson = new ArrayList<>();
        for (GpuSample g : gpus) {
            Map<String, Object> gpu = JsonLines.record();
            gpu.put(Gpu.INDEX, g.index());
            gpu.put(Gpu.NAME, g.name());
            gpu.put(Gpu.UTIL_PCT, JsonLines.measured(g.utilPercent()));
            gpu.put(Gpu.MEM_USED_BYTES, g.memUsedBytes());
            gpu.put(Gpu.MEM_TOTAL_BYTES, g.memTotalBytes());
            gpu.put(Gpu.POWER_W, JsonLines.measured(g.powerWatts()));
            gpu.put(Gpu.TEMP_C, JsonLines.measured(g.temperatureC()));
            gpuJson.add(gpu);
        }
        Map<String, Object> r = JsonLines.record();
        r.put(TS, wallMillis);
        r.put(RANK, rank);
        r.put(CLOCK_OFFSET_MS, JsonLines.measured(clockOffsetMs));
        r.put(CPU_PCT, JsonLines.measured(cpuPercent));
        r.put(IOWAIT_PCT, JsonLines.measured(iowaitPercent));
        r.put(PROC_CPU_PCT, JsonLines.measured(processCpuPercent));
        r.put(CPUS, cpus);
        r.put(MEM_TOTAL_BYTES, memTotalBytes);
        r.put(MEM_AVAILABLE_BYTES, memAvailableBytes);
        r.put(RSS_BYTES, rssBytes);
        r.put(HEAP_USED_BYTES, heapUsedBytes);
        r.put(HEAP_MAX_BYTES, heapMaxBytes);
        r.put(OFFHEAP_BYTES, offHeapBytes);
        r.put(PHYSICAL_BYTES, physicalBytes);
        r.put(GC_MS, JsonLines.measured(gcMillis));
        r.put(NET_RX_BYTES_PER_S, JsonLines.measured(netRxBytesPerSec));
        r.put(NET_TX_BYTES_PER_S, JsonLines.measured(netTxBytesPerSec));
        r.put(NET, netJson);
        r.put(DISK_READ_BYTES_PER_S, JsonLines.measured(diskReadBytesPerSec));
        r.put(DISK_WRITE_BYTES_PER_S, JsonLines.measured(diskWriteBytesPerSec));
        r.put(GPUS, gpuJson);
        return JsonLines.line(r);
    }
}
