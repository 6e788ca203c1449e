package io.dtrain.train;

import io.dtrain.common.ByteSizes;
import org.bytedeco.javacpp.Pointer;
import org.nd4j.linalg.factory.Nd4j;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The memory limits one training process runs under, read once before the model is built: JavaCPP's caps from the
 * JVM options ({@code org.bytedeco.javacpp.maxphysicalbytes}, the process's whole resident size, which JavaCPP checks
 * at every native allocation; {@code maxbytes}, what JavaCPP itself allocates), the JVM's maximum heap, and the
 * memory the machine (or its cgroup) has available, shared by the ranks of this host ({@code LOCAL_WORLD_SIZE}).
 *
 * @param physicalCap javacpp.maxphysicalbytes (0: none)
 * @param inUse       the process's resident size now (the JVM, ND4J's native libraries, what is loaded so far)
 * @param javacppCap  javacpp.maxbytes (0: none)
 * @param javacppUsed bytes JavaCPP has allocated so far
 * @param heapMax     the JVM's maximum heap
 * @param available   this rank's share of the machine's (or cgroup's) available memory (-1: unknown)
 * @param localRanks  ranks sharing this machine
 */
public record MemoryLimits(long physicalCap, long inUse, long javacppCap, long javacppUsed, long heapMax,
                           long available, int localRanks) {

    /** What part of a plan a limit bounds: all of it, what lives on the Java heap, or what JavaCPP allocates. */
    enum Part { ALL, HEAP, JAVACPP }

    /** One limit a plan can exceed: what it is called, what it leaves for the plan's {@code part}, how to raise it. */
    record Limit(String name, Part part, long room, String raise) {
    }

    /** The limits of this process now (ND4J is loaded first, so its native libraries count as in use). */
    public static MemoryLimits current() {
        Nd4j.getBackend();
        int local = 1;
        String l = System.getenv("LOCAL_WORLD_SIZE");
        if (l != null && l.strip().matches("\\d+")) {
            local = Math.max(1, Integer.parseInt(l.strip()));
        }
        long avail = availableBytes();
        return new MemoryLimits(Pointer.maxPhysicalBytes(), Pointer.physicalBytes(), Pointer.maxBytes(),
                Pointer.totalBytes(), Runtime.getRuntime().maxMemory(), avail < 0 ? -1 : avail / local, local);
    }

    /** Every limit that applies, the tightest kinds first. */
    List<Limit> limits() {
        List<Limit> out = new ArrayList<>();
        if (physicalCap > 0) {
            out.add(new Limit("javacpp.maxphysicalbytes " + ByteSizes.format(physicalCap) + " (the process's whole"
                    + " size, " + ByteSizes.format(inUse) + " of it in use before the model)", Part.ALL,
                    physicalCap - inUse, "raise the cap (DTRAIN_JAVA_OPTS=-Dorg.bytedeco.javacpp.maxphysicalbytes=SIZE;"
                    + " dtrain launch: --memory-per-worker)"));
        }
        if (available >= 0) {
            out.add(new Limit("the memory this machine has available (" + ByteSizes.format(available)
                    + (localRanks > 1 ? " per rank, " + localRanks + " ranks share it" : "") + ")", Part.ALL,
                    available, "free memory or run fewer ranks per machine"));
        }
        out.add(new Limit("the Java heap (-Xmx " + ByteSizes.format(heapMax) + ") that holds the data read into"
                + " memory", Part.HEAP, heapMax, "preprocess the data (dtrain preprocess: memory-mapped shards, off"
                + " the heap) or raise -Xmx (DTRAIN_JAVA_OPTS)"));
        if (javacppCap > 0) {
            out.add(new Limit("javacpp.maxbytes " + ByteSizes.format(javacppCap) + " (JavaCPP's own allocations:"
                    + " the dropout masks)", Part.JAVACPP, javacppCap - javacppUsed, "raise the cap"
                    + " (DTRAIN_JAVA_OPTS=-Dorg.bytedeco.javacpp.maxbytes=SIZE)"));
        }
        return out;
    }

    /** MemAvailable of /proc/meminfo, lowered to the cgroup's limit minus its usage when that is smaller; -1 if unknown. */
    static long availableBytes() {
        long best = -1;
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith("MemAvailable:")) {
                    best = Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux: unknown
        }
        long cgroup = cgroupRoom("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current");
        if (cgroup < 0) {
            cgroup = cgroupRoom("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes");
        }
        if (cgroup >= 0 && (best < 0 || cgroup < best)) {
            best = cgroup;
        }
        return best;
    }

    /** A cgroup's limit minus its usage, or -1 when there is no limit (or no such cgroup files). */
    private static long cgroupRoom(String limitFile, String usageFile) {
        try {
            String limit = Files.readString(Path.of(limitFile)).strip();
            if (limit.equals("max") || Long.parseLong(limit) >= Long.MAX_VALUE / 2) {
                return -1;
            }
            return Math.max(0, Long.parseLong(limit) - Long.parseLong(Files.readString(Path.of(usageFile)).strip()));
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }
}
