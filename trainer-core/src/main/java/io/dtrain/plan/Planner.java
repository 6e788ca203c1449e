package io.dtrain.plan;

import io.dtrain.config.ModelConfig;
import io.dtrain.config.RunConfig;
import io.dtrain.metrics.Mfu;
import io.dtrain.model.GptNames;
import io.dtrain.model.StagePartition;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Lays a run out on N nodes of G devices: for a layout (P pipeline stages x D data-parallel replicas, micro-batch,
 * schedule, recomputation) the memory each stage's device needs and the time of a step, and the layout it
 * recommends. The arithmetic, per device:
 *
 * <ul>
 * <li>memory: {@link MemoryModel}, the model the trainer's own refusal of a run too big for memory uses, for the
 * device (a GPU runs the SameDiff engine, the CUDA path; the CPU the configured engine, fused unless it says
 * samediff);</li>
 * <li>FLOPs per token = 6N + 12·L·d·T ({@link Mfu}); recomputation adds one forward (x 4/3), as do SameDiff's
 * pipeline stages without it (their backward restarts from the stage's input);</li>
 * <li>compute time = FLOPs / (peak x assumed MFU), the peak the engine's GEMMs can reach ({@link #computePeak}: fp32
 * on every device today, as SameDiff's fp16 multiplies fp16-rounded values in fp32 GEMMs); MFU is against the peak of
 * the precision (GPU fp16: tensor cores), as Megatron reports it; several CPU workers on one node share its peak;</li>
 * <li>a pipelined step takes (M + P - 1) micro-batch slots of one stage (the bubble is (P - 1)/(M + P - 1));</li>
 * <li>the gradient AllReduce moves 2 (D-1)/D x 4 bytes per parameter at the AllReduce bus bandwidth (within a node
 * when a stage's replicas fit in one, else between nodes), not overlapped (conservative); the tied embedding's
 * gradient is summed between the first and last stage; activations and their gradients cross each stage boundary
 * once per micro-batch.</li>
 * </ul>
 * The optimizer, data loading and the JVM are not modelled (a few % of a CPU step).
 */
public final class Planner {
    /** One layout to evaluate. */
    public record Layout(int stages, int replicas, int microBatch, String schedule, boolean recompute, boolean zero) {
        @Override
        public String toString() {
            return "P=" + stages + " x D=" + replicas + ", micro_batch " + microBatch + ", " + schedule
                    + (recompute ? ", recompute blocks" : "") + (zero ? ", ZeRO-1" : "");
        }
    }

    /** What a layout costs and gives. */
    public record Plan(Layout layout, List<MemoryModel.Bytes> stages, int microBatches, double flopsPerToken,
                       double computeSeconds, double allReduceSeconds, double pipeSeconds, double bubbleFraction,
                       double stepSeconds, double tokensPerSecond, double mfu, double maxStageBytes, boolean fits) {
    }

    private final RunConfig cfg;
    private final ModelConfig model;
    private final DeviceProfile device;
    private final int nodes;
    private final int devicesPerNode;
    private final boolean gpu;
    private final boolean fp16;

    public Planner(RunConfig cfg, DeviceProfile device, int nodes, int devicesPerNode) {
        if (nodes < 1 || devicesPerNode < 1) {
            throw new IllegalArgumentException("need at least one node and one device per node");
        }
        this.cfg = cfg;
        this.model = cfg.model();
        this.device = device;
        this.nodes = nodes;
        this.devicesPerNode = devicesPerNode;
        this.gpu = !"cpu".equals(device.name());
        this.fp16 = cfg.training().fp16();
    }

    public int world() {
        return nodes * devicesPerNode;
    }

    /**
     * The peak one device (one worker) gets for the run's precision (a GPU's fp16 tensor cores, else fp32): a CPU
     * node's fp32 peak is shared by the workers running on it (its fp16 is emulated in fp32).
     */
    public double devicePeak() {
        return gpu ? (fp16 ? device.peakFlopsFp16() : device.peakFlopsFp32()) : device.peakFlopsFp32() / devicesPerNode;
    }

    /**
     * The peak the engine's GEMMs can reach on one device: fp32's, also in fp16, because ND4J 1.0.0-M2.1 has no
     * HALF-in, FLOAT-out GEMM inside a graph and a HALF GEMM accumulates in fp16 (trainer-core's README, "Mixed
     * precision"), so the SameDiff engine multiplies fp16-rounded values in fp32 GEMMs, without tensor cores.
     */
    public double computePeak() {
        return gpu ? device.peakFlopsFp32() : device.peakFlopsFp32() / devicesPerNode;
    }

    /** fp16 on a GPU is planned at fp32's speed and memory: the engine's numbers are fp16's, its arithmetic fp32's. */
    public boolean fp16ComputesInFp32() {
        return gpu && fp16;
    }

    /** The engine a run of this config uses on the device: SameDiff on a GPU (the fused kernels read host memory). */
    private String engine() {
        return gpu || "samediff".equals(model.engine()) ? "samediff" : "fused";
    }

    public Plan evaluate(Layout layout) {
        int p = layout.stages();
        int d = layout.replicas();
        int b = layout.microBatch();
        int global = cfg.training().globalBatch();
        if (p * d != world() || global % (b * d) != 0) {
            throw new IllegalArgumentException(layout + " does not fit a world of " + world() + " and global batch " + global);
        }
        int m = global / (b * d);
        int[] blocks = StagePartition.blocksPerStage(model, p, p == 1 ? "" : cfg.parallel().pipelinePartition());
        long total = GptNames.layout(model, blocks).size();
        double flopsPerToken = Mfu.flopsPerToken(model, total);
        // SameDiff's pipeline stages recompute their forward in the backward whatever training.recompute says
        boolean recomputes = layout.recompute() || "samediff".equals(engine()) && p > 1;
        double recomputeFactor = recomputes ? 4.0 / 3.0 : 1.0;
        int threads = gpu ? 1 : Math.max(1, Runtime.getRuntime().availableProcessors() / devicesPerNode);
        MemoryModel.Setup memory = MemoryModel.Setup.of(cfg, engine(), p, d, b, layout.schedule(),
                layout.recompute(), layout.zero(), threads);
        List<MemoryModel.Bytes> stages = new ArrayList<>();
        double maxStage = 0;
        long maxParams = 0;
        for (int s = 0; s < p; s++) {
            MemoryModel.Bytes sm = MemoryModel.of(memory, s);
            stages.add(sm);
            maxParams = Math.max(maxParams, sm.parameterCount());
            maxStage = Math.max(maxStage, sm.total());
        }
        double rate = computePeak() * device.assumedMfu();
        double microBatchFlops = (double) b * model.seqLen() * flopsPerToken * recomputeFactor;
        double compute;
        double bubble;
        if (p == 1) {
            compute = m * microBatchFlops / rate;
            bubble = 0;
        } else {
            compute = (m + p - 1) * (microBatchFlops / p) / rate;
            bubble = (p - 1.0) / (m + p - 1.0);
        }
        boolean replicasInNode = d <= devicesPerNode && devicesPerNode % d == 0 || nodes == 1;
        double allReduceBw = replicasInNode ? device.intraNodeBytesPerS() : device.interNodeBytesPerS();
        double allReduce = d == 1 ? 0 : 2.0 * (d - 1) / d * 4.0 * maxParams / allReduceBw;
        boolean pipelineInNode = p * d <= devicesPerNode || nodes == 1;
        double pipeBw = pipelineInNode ? device.intraNodeBytesPerS() : device.interNodeBytesPerS();
        double pipe = 0;
        if (p > 1) {
            double boundary = (double) b * model.seqLen() * model.dModel() * 4.0;
            pipe = 2.0 * m * boundary / pipeBw;
            if (model.tieEmbeddings()) {
                pipe += 4.0 * model.vocabSize() * model.dModel() / pipeBw;
            }
        }
        double step = compute + allReduce + pipe;
        double tokens = (double) global * model.seqLen();
        double tokensPerSecond = tokens / step;
        double mfu = flopsPerToken * tokensPerSecond / (devicePeak() * world());
        boolean fits = maxStage <= device.usableBytes();
        return new Plan(layout, stages, m, flopsPerToken, compute, allReduce, pipe, bubble, step, tokensPerSecond, mfu,
                maxStage, fits);
    }

    /**
     * Every layout of this world: P a divisor of the world up to n_layer, D the rest, every power-of-two micro-batch
     * that divides the global batch per replica, 1F1B (never worse than GPipe: the same bubble, less memory),
     * recomputation on and off; the fastest first, ties to the larger micro-batch (GEMMs run better on more rows,
     * which the model does not count) and then to less memory.
     */
    public List<Plan> candidates() {
        List<Plan> out = new ArrayList<>();
        int global = cfg.training().globalBatch();
        for (int p = 1; p <= Math.min(world(), model.nLayer()); p++) {
            if (world() % p != 0) {
                continue;
            }
            int d = world() / p;
            if (global % d != 0) {
                continue;
            }
            for (int b = 1; b <= global / d; b *= 2) {
                if ((global / d) % b != 0) {
                    continue;
                }
                for (boolean recompute : new boolean[] {false, true}) {
                    out.add(evaluate(new Layout(p, d, b, "1f1b", recompute, false)));
                    if (p == 1 && d > 1) { // ZeRO-1 is not supported together with pipeline stages
                        out.add(evaluate(new Layout(p, d, b, "1f1b", recompute, true)));
                    }
                }
            }
        }
        out.sort(Comparator.comparingDouble((Plan p) -> Math.round(p.stepSeconds() * 1e6))
                .thenComparing(p -> -p.layout().microBatch()).thenComparingDouble(Plan::maxStageBytes));
        return out;
    }

    /** The fastest layout that fits the device's memory, or null when none does. */
    public Plan recommend() {
        return candidates().stream().filter(Plan::fits).findFirst().orElse(null);
    }
}
