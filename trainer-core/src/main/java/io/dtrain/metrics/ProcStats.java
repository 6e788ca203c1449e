package io.dtrain.metrics;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Predicate;

/**
 * Parsers of the Linux /proc files the system sampler reads. Pure functions of the file text, so that tests can
 * feed them fixed contents; {@link #read} returns "" when a file does not exist (not Linux, or a container
 * hiding it), and every parser treats "" as "nothing known".
 */
final class ProcStats {
    /** Linux reports diskstats in 512-byte sectors whatever the device's sector size. */
    static final long SECTOR_BYTES = 512;

    private ProcStats() {
    }

    /** Aggregate CPU jiffies from the first line of /proc/stat. */
    record CpuTimes(long total, long idle, long iowait) {
        static final CpuTimes NONE = new CpuTimes(0, 0, 0);

        /** Busy share of all cores between two readings, in percent (NaN without a difference). */
        double busyPercentSince(CpuTimes before) {
            long dt = total - before.total;
            return dt <= 0 ? Double.NaN : 100.0 * (dt - (idle - before.idle) - (iowait - before.iowait)) / dt;
        }

        double iowaitPercentSince(CpuTimes before) {
            long dt = total - before.total;
            return dt <= 0 ? Double.NaN : 100.0 * (iowait - before.iowait) / dt;
        }
    }

    record MemInfo(long totalBytes, long availableBytes) {
    }

    record Bytes(long read, long written) {
    }

    static String read(Path file) {
        try {
            return Files.readString(file);
        } catch (IOException | RuntimeException e) {
            return "";
        }
    }

    /** "cpu user nice system idle iowait irq softirq steal guest guest_nice": guest time is already in user. */
    static CpuTimes parseCpu(String procStat) {
        for (String line : procStat.split("\n")) {
            if (line.startsWith("cpu ")) {
                String[] f = line.trim().split("\\s+");
                long total = 0;
                for (int i = 1; i < Math.min(f.length, 9); i++) {
                    total += Long.parseLong(f[i]);
                }
                long iowait = f.length > 5 ? Long.parseLong(f[5]) : 0;
                return new CpuTimes(total, Long.parseLong(f[4]), iowait);
            }
        }
        return CpuTimes.NONE;
    }

    static MemInfo parseMeminfo(String meminfo) {
        long total = -1;
        long available = -1;
        for (String line : meminfo.split("\n")) {
            if (line.startsWith("MemTotal:")) {
                total = kib(line);
            } else if (line.startsWith("MemAvailable:")) {
                available = kib(line);
            }
        }
        return new MemInfo(total, available);
    }

    /** VmRSS of /proc/self/status in bytes, -1 if absent. */
    static long parseRss(String status) {
        for (String line : status.split("\n")) {
            if (line.startsWith("VmRSS:")) {
                return kib(line);
            }
        }
        return -1;
    }

    private static long kib(String line) {
        String[] f = line.trim().split("\\s+");
        return Long.parseLong(f[1]) * 1024;
    }

    /** Received and transmitted bytes per interface (lo included), from /proc/net/dev. */
    static Map<String, Bytes> parseNetDev(String netDev) {
        Map<String, Bytes> out = new LinkedHashMap<>();
        for (String line : netDev.split("\n")) {
            int colon = line.indexOf(':');
            if (colon < 0 || line.contains("|")) {
                continue;
            }
            String name = line.substring(0, colon).trim();
            String[] f = line.substring(colon + 1).trim().split("\\s+");
            if (f.length >= 9) {
                out.put(name, new Bytes(Long.parseLong(f[0]), Long.parseLong(f[8])));
            }
        }
        return out;
    }

    /**
     * Bytes read and written by whole disks (partitions would count twice), from /proc/diskstats:
     * "major minor name reads merged sectors_read ms writes merged sectors_written ...".
     */
    static Bytes parseDiskstats(String diskstats, Predicate<String> isWholeDisk) {
        long read = 0;
        long written = 0;
        for (String line : diskstats.split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length < 10 || !isWholeDisk.test(f[2])) {
                continue;
            }
            read += Long.parseLong(f[5]) * SECTOR_BYTES;
            written += Long.parseLong(f[9]) * SECTOR_BYTES;
        }
        return new Bytes(read, written);
    }

    /** A block device under /sys/block that is not a loop or RAM disk (zram, ram). */
    static boolean isPhysicalDisk(String name) {
        if (name.startsWith("loop") || name.startsWith("ram") || name.startsWith("zram")) {
            return false;
        }
        return Files.isDirectory(Path.of("/sys/block", name));
    }
}
