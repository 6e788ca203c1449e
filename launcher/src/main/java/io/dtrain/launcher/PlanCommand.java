package io.dtrain.launcher;

import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.metrics.GemmBenchmark;
import io.dtrain.plan.DeviceProfile;
import io.dtrain.plan.MemoryModel;
import io.dtrain.plan.Planner;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "plan",
        mixinStandardHelpOptions = true,
        description = {
                "Lay a run out on N nodes of G devices and recommend a layout.",
                "",
                "Prints memory per device for each pipeline stage, FLOPs and time per step, the pipeline bubble, the",
                "AllReduce time, predicted tokens/s and MFU, and the layout (pipeline stages P x data-parallel",
                "replicas D, micro-batch, recomputation) it recommends and why.",
                "",
                "Device figures come from a profile file with sources (built in: v100, a100, h100, cpu; --hardware",
                "FILE for your own); for cpu the GEMM peak is measured now and the memory is this machine's.",
                "",
                "Examples:",
                "  dtrain plan --config configs/gpt-1.3b-p3.yaml --nodes 10 --gpus-per-node 8 --gpu v100",
                "  dtrain plan --config configs/gpt-cpu-small.yaml --nodes 1 --gpus-per-node 2 --gpu cpu"})
public final class PlanCommand implements Callable<Integer> {
    private static final double GIB = 1L << 30;

    @Spec
    CommandSpec spec;

    @Option(names = {"-c", "--config"}, required = true, paramLabel = "FILE", description = "The run's YAML configuration.")
    Path config;

    @Option(names = "--set", paramLabel = "KEY=VALUE", description = "Override one configuration key. Repeatable.")
    List<String> overrides = new ArrayList<>();

    @Option(names = "--nodes", paramLabel = "N", defaultValue = "1", description = "Nodes. Default: ${DEFAULT-VALUE}.")
    int nodes;

    @Option(names = "--gpus-per-node", paramLabel = "G", defaultValue = "1",
            description = "Devices (workers) per node. Default: ${DEFAULT-VALUE}.")
    int perNode;

    @Option(names = "--gpu", paramLabel = "KIND", defaultValue = "cpu",
            description = "Device profile: v100, a100, h100 or cpu (or one of --hardware). Default: ${DEFAULT-VALUE}.")
    String gpu;

    @Option(names = "--hardware", paramLabel = "FILE", description = "A device profile file (default: the built-in one).")
    Path hardware;

    @Option(names = "--peak-tflops", paramLabel = "X", description = "cpu: the fp32 GEMM peak of one node, as dtrain bench"
            + " gemm prints it (default: measured now).")
    Double peakTflops;

    @Option(names = "--allreduce-gbps", paramLabel = "X", description = "AllReduce bus bandwidth within a node in GB/s, as"
            + " dtrain bench allreduce prints it (default: the profile's).")
    Double allReduceGbps;

    @Option(names = "--top", paramLabel = "K", defaultValue = "5", description = "Other layouts to list. Default: ${DEFAULT-VALUE}.")
    int top;

    @Override
    public Integer call() {
        if (nodes < 1 || perNode < 1) {
            throw new UserError("--nodes and --gpus-per-node must be >= 1, got " + nodes + " and " + perNode);
        }
        RunConfig cfg = ConfigLoader.load(config, overrides, Path.of("").toAbsolutePath(), line -> { });
        Map<String, DeviceProfile> profiles = DeviceProfile.load(hardware);
        DeviceProfile device = profiles.get(gpu);
        if (device == null) {
            throw new UserError("--gpu " + gpu + ": no such device profile; choose one of " + profiles.keySet());
        }
        PrintWriter out = spec.commandLine().getOut();
        if ("cpu".equals(gpu)) {
            double peak = peakTflops != null ? peakTflops * 1e12 : GemmBenchmark.quickPeak();
            double memory = device.memoryBytes() > 0 ? device.memoryBytes() : availableMemory() / perNode;
            device = device.with(memory, peak, device.intraNodeBytesPerS());
        }
        if (allReduceGbps != null) {
            device = device.with(device.memoryBytes(), device.peakFlopsFp32(), allReduceGbps * 1e9);
        }
        Planner planner = new Planner(cfg, device, nodes, perNode);
        boolean onGpu = !"cpu".equals(gpu);
        out.printf(Locale.ROOT, "device: %s (%s); %.1f GiB, %s peak %.1f TFLOP/s per %s, assumed MFU %.2f; AllReduce"
                        + " %.1f GB/s within a node, %.1f GB/s between nodes%n", device.name(), device.description(),
                device.memoryBytes() / (1L << 30), onGpu ? cfg.training().precision() : "fp32",
                (onGpu ? planner.devicePeak() : device.peakFlopsFp32()) / 1e12, onGpu ? "device" : "node",
                device.assumedMfu(), device.intraNodeBytesPerS() / 1e9, device.interNodeBytesPerS() / 1e9);
        if (planner.fp16ComputesInFp32()) {
            out.printf(Locale.ROOT, "note: fp16 is planned at fp32's speed (%.1f TFLOP/s) and memory: the SameDiff engine"
                    + " rounds to fp16 but multiplies in fp32 GEMMs (ND4J 1.0.0-M2.1 has no HALF-in, FLOAT-out GEMM in a"
                    + " graph); MFU is still against the fp16 peak%n", planner.computePeak() / 1e12);
        }
        out.printf(Locale.ROOT, "job: %d node(s) x %d = %d workers; global batch %d x %d tokens%n", nodes, perNode,
                planner.world(), cfg.training().globalBatch(), cfg.model().seqLen());
        int configured = cfg.parallel().pipelineStages();
        if (planner.world() % configured == 0 && cfg.training().globalBatch() % (planner.world() / configured) == 0) {
            int d = planner.world() / configured;
            int b = cfg.microBatch(d);
            out.println();
            out.println("as configured:");
            print(out, planner.evaluate(new Planner.Layout(configured, d, b, cfg.parallel().pipelineSchedule(),
                    cfg.training().recomputeBlocks(), cfg.optimizer().shardState())));
        }
        List<Planner.Plan> all = planner.candidates();
        Planner.Plan best = all.stream().filter(Planner.Plan::fits).findFirst().orElse(null);
        out.println();
        if (best == null) {
            out.printf(Locale.ROOT, "recommended: none of %d layouts fits %.1f GiB per device; the smallest needs %.1f"
                            + " GiB (%s): use more devices, a shorter seq_len or a smaller micro_batch%n", all.size(),
                    device.usableBytes() / (1L << 30), all.stream().mapToDouble(Planner.Plan::maxStageBytes).min()
                            .orElse(0) / (1L << 30), all.stream().min((a, c) -> Double.compare(a.maxStageBytes(),
                            c.maxStageBytes())).map(p -> p.layout().toString()).orElse("-"));
            out.flush();
            return 0;
        }
        long fitting = all.stream().filter(Planner.Plan::fits).count();
        out.printf(Locale.ROOT, "recommended: %s -- the fastest of the %d layouts (of %d) that fit the %.1f GiB a device"
                        + " can give (%.1f GiB, less %.1f reserved, less 10%%)%n", best.layout(), fitting, all.size(),
                device.usableBytes() / (1L << 30), device.memoryBytes() / (1L << 30), device.reservedBytes() / (1L << 30));
        print(out, best);
        List<Planner.Plan> faster = all.stream().filter(p -> !p.fits() && p.stepSeconds() < best.stepSeconds()).limit(3).toList();
        for (Planner.Plan p : faster) {
            out.printf(Locale.ROOT, "  faster but does not fit: %s (%.0f tok/s, needs %.1f GiB)%n", p.layout(),
                    p.tokensPerSecond(), p.maxStageBytes() / (1L << 30));
        }
        out.println();
        out.println("other layouts that fit (fastest first):");
        all.stream().filter(Planner.Plan::fits).skip(1).limit(top).forEach(p -> out.printf(Locale.ROOT,
                "  %-45s %10.0f tok/s  MFU %4.1f%%  bubble %4.1f%%  max %.1f GiB%n", p.layout(), p.tokensPerSecond(),
                100 * p.mfu(), 100 * p.bubbleFraction(), p.maxStageBytes() / (1L << 30)));
        out.flush();
        return 0;
    }

    private static void print(PrintWriter out, Planner.Plan p) {
        out.printf(Locale.ROOT, "  %s: %d micro-batch(es) per replica per step%n", p.layout(), p.microBatches());
        out.printf(Locale.ROOT, "  %-6s %7s %12s %14s %14s %9s %10s %12s%n", "stage", "blocks", "parameters",
                "weights+grads+adam", "act/micro-batch", "sets", "other", "total");
        for (MemoryModel.Bytes s : p.stages()) {
            out.printf(Locale.ROOT, "  %-6d %7d %12d %14.2f GiB %10.2f GiB %9d %6.2f GiB %8.2f GiB%n", s.stage(),
                    s.blocks(), s.parameterCount(), s.state() / GIB, s.activationsPerMicroBatch() / GIB, s.sets(),
                    s.overhead() / GIB, s.total() / GIB);
        }
        out.printf(Locale.ROOT, "  %.3g FLOP/token; step %.3f s = compute %.3f s (bubble %.1f%%) + AllReduce %.3f s +"
                        + " pipeline transfers %.3f s; %.0f tokens/s, MFU %.1f%%%s%n", p.flopsPerToken(), p.stepSeconds(),
                p.computeSeconds(), 100 * p.bubbleFraction(), p.allReduceSeconds(), p.pipeSeconds(), p.tokensPerSecond(),
                100 * p.mfu(), p.fits() ? "" : "; DOES NOT FIT");
    }

    /** MemAvailable of /proc/meminfo (the JVM's own max heap elsewhere). */
    private static double availableMemory() {
        try {
            for (String line : java.nio.file.Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith("MemAvailable:")) {
                    return Double.parseDouble(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (java.io.IOException | NumberFormatException e) {
            // fall through
        }
        return Runtime.getRuntime().maxMemory();
    }
}
