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
    public static final double V100 = 125e12;
    public static final double A100 = 312e12;
    public static final double H100 = 989e12;

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

    /** Dense peak of one device: V100 fp16 tensor cores, A100 bf16/fp16, H100 SXM dense bf16; NaN for cpu. */
    public static double devicePeak(String device) {
        return switch (device) {
            case "v100" -> V100;
            case "a100" -> A100;
            case "h100" -> H100;
            case "cpu" -> Double.NaN;
            default -> throw new IllegalArgumentException("unknown metrics.device '" + device
                    + "'; expected cpu, v100, a100 or h100");
        };
    }

    /** metrics.peak_flops if set, else the device's figure, else (cpu) {@code measureCpu}'s fp32 GEMM rate. */
    public static double peakFlops(MetricsConfig cfg, DoubleSupplier measureCpu) {
        if (cfg.peakFlops() > 0) {
            return cfg.peakFlops();
        }
        double device = devicePeak(cfg.device());
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
