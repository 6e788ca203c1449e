package io.dtrain.config;

/**
 * Learning-rate schedule: linear warm-up from 0 to {@code optimizer.lr}, then decay to {@code optimizer.min_lr}.
 * Keys under {@code schedule:}.
 *
 * @param warmupSteps steps of linear warm-up
 * @param decay       "cosine", "linear" or "constant"
 * @param decaySteps  step at which the decay reaches min_lr (0 means training.steps)
 */
public record ScheduleConfig(int warmupSteps, String decay, long decaySteps) {

    public static ScheduleConfig defaults() {
        return ConfigSchema.defaults().schedule();
    }
}
