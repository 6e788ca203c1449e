package io.dtrain.metrics;

import java.util.List;
import java.util.Map;

/**
 * One reading of the system sampler: one JSON line of {@code metrics/system-rank<r>.jsonl}. Rates are over the
 * interval since the previous reading; percentages of CPU are of all cores of the host (0..100). Unknown values
 * (no /proc, first reading) are NaN / -1 and written as null.
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

    public String toJson() {
        StringBuilder netJson = new StringBuilder("{");
        for (Map.Entry<String, Rates> e : net.entrySet()) {
            if (netJson.length() > 1) {
                netJson.append(',');
            }
            JsonLine.quote(netJson, e.getKey());
            netJson.append(':').append(new JsonLine().field("rx_bytes_per_s", e.getValue().rxBytesPerSec())
                    .field("tx_bytes_per_s", e.getValue().txBytesPerSec()));
        }
        netJson.append('}');
        StringBuilder gpuJson = new StringBuilder("[");
        for (GpuSample g : gpus) {
            if (gpuJson.length() > 1) {
                gpuJson.append(',');
            }
            gpuJson.append(new JsonLine().field("index", g.index()).field("name", g.name())
                    .field("util_pct", g.utilPercent()).field("mem_used_bytes", g.memUsedBytes())
                    .field("mem_total_bytes", g.memTotalBytes()).field("power_w", g.powerWatts())
                    .field("temp_c", g.temperatureC()));
        }
        gpuJson.append(']');
        return new JsonLine().field("ts", wallMillis).field("rank", rank).field("clock_offset_ms", clockOffsetMs)
                .field("cpu_pct", cpuPercent).field("iowait_pct", iowaitPercent).field("proc_cpu_pct", processCpuPercent)
                .field("cpus", cpus).field("mem_total_bytes", memTotalBytes).field("mem_available_bytes", memAvailableBytes)
                .field("rss_bytes", rssBytes).field("heap_used_bytes", heapUsedBytes).field("heap_max_bytes", heapMaxBytes)
                .field("offheap_bytes", offHeapBytes).field("physical_bytes", physicalBytes).field("gc_ms", gcMillis)
                .field("net_rx_bytes_per_s", netRxBytesPerSec).field("net_tx_bytes_per_s", netTxBytesPerSec)
                .raw("net", netJson.toString()).field("disk_read_bytes_per_s", diskReadBytesPerSec)
                .field("disk_write_bytes_per_s", diskWriteBytesPerSec).raw("gpus", gpuJson.toString()).toString();
    }
}
