package io.dtrain.config;

/**
 * What a run measures about itself besides the loss. Keys under {@code metrics:}.
 *
 * @param intervalMs     system sampler period in ms (CPU, memory, network, disk, GPU); 0 = no system sampling
 * @param device         the accelerator whose peak the MFU is relative to: cpu, v100, a100 or h100
 * @param peakFlops      peak FLOP/s of one rank's device for the MFU (0 = the device's default; for cpu the fp32
 *                       GEMM rate measured at start, as {@code dtrain bench gemm} does)
 * @param prometheusPort serve Prometheus metrics on this port + local rank (0 = no endpoint)
 * @param trace          write a Chrome/Perfetto trace of the phases of every step
 * @param tensorboard    write TensorBoard event files of the step and evaluation scalars
 */
public record MetricsConfig(int intervalMs, String device, double peakFlops, int prometheusPort, boolean trace,
                            boolean tensorboard) {

    /** With TensorBoard event files. */
    public MetricsConfig(int intervalMs, String device, double peakFlops, int prometheusPort, boolean trace) {
        this(intervalMs, device, peakFlops, prometheusPort, trace, true);
    }

    public static MetricsConfig defaults() {
        return ConfigSchema.defaults().metrics();
    }
}
