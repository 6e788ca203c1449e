package io.dtrain.metrics;

/**
 * The field names of one line of {@code metrics/system-rank<r>.jsonl} (one {@link SystemSample}), defined once:
 * {@link SystemSample#toJson} writes them, {@code io.dtrain.report} reads them. See {@link SystemSample} for units.
 */
public final class SystemFields {
    public static final String TS = "ts";
    public static final String RANK = "rank";
    public static final String CLOCK_OFFSET_MS = "clock_offset_ms";
    public static final String CPU_PCT = "cpu_pct";
    public static final String IOWAIT_PCT = "iowait_pct";
    public static final String PROC_CPU_PCT = "proc_cpu_pct";
    public static final String CPUS = "cpus";
    public static final String MEM_TOTAL_BYTES = "mem_total_bytes";
    public static final String MEM_AVAILABLE_BYTES = "mem_available_bytes";
    public static final String RSS_BYTES = "rss_bytes";
    public static final String HEAP_USED_BYTES = "heap_used_bytes";
    public static final String HEAP_MAX_BYTES = "heap_max_bytes";
    public static final String OFFHEAP_BYTES = "offheap_bytes";
    public static final String PHYSICAL_BYTES = "physical_bytes";
    public static final String GC_MS = "gc_ms";
    public static final String NET_RX_BYTES_PER_S = "net_rx_bytes_per_s";
    public static final String NET_TX_BYTES_PER_S = "net_tx_bytes_per_s";
    /** An object: interface name -> {@link Net} fields. */
    public static final String NET = "net";
    public static final String DISK_READ_BYTES_PER_S = "disk_read_bytes_per_s";
    public static final String DISK_WRITE_BYTES_PER_S = "disk_write_bytes_per_s";
    /** An array of {@link Gpu} objects. */
    public static final String GPUS = "gpus";

    /** The fields of one interface under {@link #NET}. */
    public static final class Net {
        public static final String RX_BYTES_PER_S = "rx_bytes_per_s";
        public static final String TX_BYTES_PER_S = "tx_bytes_per_s";

        private Net() {
        }
    }

    /** The fields of one GPU in {@link #GPUS}. */
    public static final class Gpu {
        public static final String INDEX = "index";
        public static final String NAME = "name";
        public static final String UTIL_PCT = "util_pct";
        public static final String MEM_USED_BYTES = "mem_used_bytes";
        public static final String MEM_TOTAL_BYTES = "mem_total_bytes";
        public static final String POWER_W = "power_w";
        public static final String TEMP_C = "temp_c";

        private Gpu() {
        }
    }

    private SystemFields() {
    }
}
