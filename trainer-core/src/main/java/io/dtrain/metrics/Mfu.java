package io.dtrain.metrics;

import io.dtrain.config.MetricsConfig;
import io.dtrain.config.ModelConfig;

import java.util.function.DoubleSupplier;

/**
 * Model FLOPs utilization: the FLOP/s a rank achieves on the model's arithmetic over its device's peak
 * (PaLM, appendix B; nanoGPT's estimate_mfu). FLOPs per token = 6N + 12·L·d·T: 6N for the forward and backward
 * matrix multiplies of the N non-embedding parameters (2 FLOPs per multiply-add, backward twice the forward) and
 * 12·L·d·T for attention's QK^T and AV products. Recomputation and the optimizer are not counted.
 */
public final class Mfu {
    private Mfu() {
    }

    /** PaLM's formula; {@code nonEmbeddingParams} as nanoGPT counts them (all but the position embedding). */
    public static double flopsPerToken(long nonEmbeddingParams, int nLayer, int dModel, int seqLen) {
        return 6.0 * nonEmbeddingParams + 12.0 * nLayer * dModel * seqLen;
    }

    /** FLOPs per token of a model with {@code parameterCount} parameters in total (position embedding included). */
    public static double flopsPerToken(ModelConfig model, long parameterCount) {
        long positionEmbedding = (long) model.seqLen() * model.dModel();
        return flopsPerToken(parameterCount - positionEmbedding, model.nLayer(), model.dModel(), model.seqLen());
    }

    /**
     * Dense peak of one device for {@code precision} (fp32: CUDA cores; fp16: tensor cores), from the planner's
     * profiles ({@code io/dtrain/plan/hardware.yaml}): V100 15.7 / 125 TFLOP/s, A100 19.5 / 312, H100 67 / 989;
     * NaN for cpu (measured instead).
     */
    public static double devicePeak(String device, String precision) {
        if ("cpu".equals(device)) {
            return Double.NaN;
        }
        io.dtrain.plan.DeviceProfile p = io.dtrain.plan.DeviceProfile.load(null).get(device);
        if (p == null) {
            throw new IllegalArgumentException("unknown metrics.device '" + device + "'; expected cpu, v100, a100 or h100");
        }
        return "fp32".equals(precision) ? p.peakFlopsFp32() : p.peakFlopsFp16();
    }

    /**
     * metrics.peak_flops if set, else the device's figure for the precision in use, else (cpu) {@code measureCpu}'s
     * fp32 GEMM rate (the CPU emulates fp16 in fp32 arithmetic, so its peak is the same).
     */
    public static double peakFlops(MetricsConfig cfg, String precision, DoubleSupplier measureCpu) {
        if (cfg.peakFlops() > 0) {
            return cfg.peakFlops();
        }
        double device = devicePeak(cfg.device(), precision);
        return Double.isNaN(device) ? measureCpu.getAsDouble() : device;
    }

    /** Achieved over peak, in [0, 1] for honest inputs; NaN when unknown. */
    public static double mfu(double flopsPerToken, double tokensPerRank, double stepSeconds, double peakFlops) {
        if (!(stepSeconds > 0) || !(peakFlops > 0)) {
            return Double.NaN;
        }
        return flopsPerToken * tokensPerRank / stepSeconds / peakFlops;
    }
}
