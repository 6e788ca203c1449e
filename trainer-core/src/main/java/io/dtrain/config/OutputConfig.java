package io.dtrain.config;

/**
 * Where a run writes. Keys under {@code output:}.
 *
 * @param dir             run directory (checkpoints/, metrics, resolved config)
 * @param keepCheckpoints keep the newest K checkpoints (older ones are deleted after a new one is committed)
 */
public record OutputConfig(String dir, int keepCheckpoints) {

    public static OutputConfig defaults() {
        return ConfigSchema.defaults().output();
    }
}
