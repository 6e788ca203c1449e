package io.dtrain.plan;

import io.dtrain.common.UserFacingException;
import org.snakeyaml.engine.v2.api.Load;
import org.snakeyaml.engine.v2.api.LoadSettings;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One kind of device the planner lays a job out on, from a profile file ({@code io/dtrain/plan/hardware.yaml} by
 * default: every figure with its source there).
 *
 * @param memoryBytes      memory per device (0 for cpu: the machine's available memory, filled in by the caller)
 * @param reservedBytes    memory a device loses before dtrain allocates (CUDA context, workspaces; the JVM)
 * @param peakFlopsFp32    dense fp32 peak per device (0 for cpu: measured)
 * @param intraNodeBytesPerS AllReduce bus bandwidth between the devices of one node
 * @param interNodeBytesPerS AllReduce bus bandwidth between nodes
 * @param assumedMfu       the fraction of the peak a training step's model FLOPs reach
 */
public record DeviceProfile(String name, String description, double memoryBytes, double reservedBytes, double peakFlopsFp32,
                            double peakFlopsFp16, double intraNodeBytesPerS, double interNodeBytesPerS,
                            double assumedMfu, List<String> sources) {

    /** Profiles by name from {@code file}, or from the built-in file when null. */
    public static Map<String, DeviceProfile> load(Path file) {
        try (InputStream in = file == null ? DeviceProfile.class.getResourceAsStream("hardware.yaml")
                : Files.newInputStream(file)) {
            Object root = new Load(LoadSettings.builder().build()).loadFromInputStream(in);
            if (!(root instanceof Map<?, ?> m)) {
                throw new UserFacingException((file == null ? "hardware.yaml" : file) + ": expected a mapping of profile"
                        + " names to profiles");
            }
            Map<String, DeviceProfile> out = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : m.entrySet()) {
                String name = String.valueOf(e.getKey());
                if (!(e.getValue() instanceof Map<?, ?> p)) {
                    throw new UserFacingException((file == null ? "hardware.yaml" : file) + ": profile " + name
                            + " is not a mapping");
                }
                List<String> sources = new ArrayList<>();
                if (p.get("sources") instanceof List<?> l) {
                    l.forEach(x -> sources.add(String.valueOf(x)));
                }
                out.put(name, new DeviceProfile(name, String.valueOf(p.get("description")),
                        number(p, "memory_gib", name) * (1L << 30), number(p, "reserved_gib", name) * (1L << 30),
                        number(p, "peak_tflops_fp32", name) * 1e12,
                        number(p, "peak_tflops_fp16", name) * 1e12, number(p, "intra_node_gbps", name) * 1e9,
                        number(p, "inter_node_gbps", name) * 1e9, number(p, "assumed_mfu", name), sources));
            }
            return out;
        } catch (IOException e) {
            throw new UserFacingException("cannot read the hardware profiles " + file + ": " + e.getMessage(), e);
        }
    }

    private static double number(Map<?, ?> p, String key, String profile) {
        Object v = p.get(key);
        if (!(v instanceof Number n)) {
            throw new UserFacingException("hardware profile " + profile + ": " + key + " must be a number, got " + v);
        }
        return n.doubleValue();
    }

    /** The memory a layout may fill: the device's, less what is reserved, less 10% headroom. */
    public double usableBytes() {
        return 0.9 * (memoryBytes - reservedBytes);
    }

    /** This profile with measured figures in place of the file's (cpu: the GEMM peak, memory, AllReduce bandwidth). */
    public DeviceProfile with(double memory, double peakFp32, double intraNode) {
        return new DeviceProfile(name, description, memory, reservedBytes, peakFp32, peakFlopsFp16, intraNode, interNodeBytesPerS,
                assumedMfu, sources);
    }
}
