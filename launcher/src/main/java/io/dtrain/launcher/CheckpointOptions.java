package io.dtrain.launcher;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Options shared by commands that start from a checkpoint (eval, generate). */
final class CheckpointOptions {
    @Option(names = "--checkpoint", required = true, paramLabel = "DIR",
            description = "A checkpoint step directory, a checkpoints directory or a run directory (its latest checkpoint).")
    Path checkpoint;

    @Option(names = "--set", paramLabel = "KEY=VALUE",
            description = "Override a key of the configuration stored in the checkpoint, e.g. --set data.val=other/. Repeatable.")
    List<String> overrides = new ArrayList<>();

    Checkpoint load() {
        return Checkpoint.load(checkpoint);
    }

    /** The run configuration stored with the checkpoint, with --set overrides applied and validated. */
    RunConfig config(Checkpoint ck) {
        Object yaml = ck.extra().get("config_yaml");
        if (!(yaml instanceof String text)) {
            throw new UserError("checkpoint " + ck.directory() + " stores no run configuration (config_yaml in its "
                    + "manifest.json); it was not written by dtrain train");
        }
        return ConfigLoader.fromYaml(text, ck.directory().resolve("manifest.json") + " (config_yaml)", overrides,
                Path.of("").toAbsolutePath());
    }
}
