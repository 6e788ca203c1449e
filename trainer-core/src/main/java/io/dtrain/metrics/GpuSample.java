package io.dtrain.metrics;

/**
 * One GPU's reading from nvidia-smi. Values nvidia-smi cannot give ("[N/A]", "[Not Supported]") are NaN / -1.
 *
 * @param index          GPU index as nvidia-smi numbers it
 * @param name           product name ("" when not queried)
 * @param utilPercent    utilization.gpu: share of time a kernel was running
 * @param memUsedBytes   memory.used
 * @param memTotalBytes  memory.total
 * @param powerWatts     power.draw
 * @param temperatureC   temperature.gpu
 */
public record GpuSample(int index, String name, double utilPercent, long memUsedBytes, long memTotalBytes,
                        double powerWatts, double temperatureC) {
}
