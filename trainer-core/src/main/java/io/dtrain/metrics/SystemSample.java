package io.dtrain.metrics;

import io.dtrain.metrics.SystemFields.Gpu;
import io.dtrain.metrics.SystemFields.Net;

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

    public String toJson() {
        StringBuilder netJson = new StringBuilder("{");
        for (Map.Entry<String, Rates> e : net.entrySet()) {
            if (netJson.length() > 1) {
                netJson.append(',');
            }
            JsonLine.quote(netJson, e.getKey());
            netJson.append(':').append(new JsonLine().field(Net.RX_BYTES_PER_S, e.getValue().rxBytesPerSec())
                    .field(Net.TX_BYTES_PER_S, e.getValue().txBytesPerSec()));
        }
        netJson.append('}');
        StringBuilder gpuJson = new StringBuilder("[");
        for (GpuSample g : gpus) {
            if (gpuJson.length() > 1) {
                gpuJson.append(',');
            }
            gpuJson.append(new JsonLine().field(Gpu.INDEX, g.index()).field(Gpu.NAME, g.name())
                    .field(Gpu.UTIL_PCT, g.utilPercent()).field(Gpu.MEM_USED_BYTES, g.memUsedBytes())
                    .field(Gpu.MEM_TOTAL_BYTES, g.memTotalBytes()).field(Gpu.POWER_W, g.powerWatts())
                    .field(Gpu.TEMP_C, g.temperatureC()));
        }
        gpuJson.append(']');
        return new JsonLine().field(TS, wallMillis).field(RANK, rank).field(CLOCK_OFFSET_MS, clockOffsetMs)
                .field(CPU_PCT, cpuPercent).field(IOWAIT_PCT, iowaitPercent).field(PROC_CPU_PCT, processCpuPercent)
                .field(CPUS, cpus).field(MEM_TOTAL_BYTES, memTotalBytes).field(MEM_AVAILABLE_BYTES, memAvailableBytes)
                .field(RSS_BYTES, rssBytes).field(HEAP_USED_BYTES, heapUsedBytes).field(HEAP_MAX_BYTES, heapMaxBytes)
                .field(OFFHEAP_BYTES, offHeapBytes).field(PHYSICAL_BYTES, physicalBytes).field(GC_MS, gcMillis)
                .field(NET_RX_BYTES_PER_S, netRxBytesPerSec).field(NET_TX_BYTES_PER_S, netTxBytesPerSec)
                .raw(NET, netJson.toString()).field(DISK_READ_BYTES_PER_S, diskReadBytesPerSec)
                .field(DISK_WRITE_BYTES_PER_S, diskWriteBytesPerSec).raw(GPUS, gpuJson.toString()).toString();
    }
}
