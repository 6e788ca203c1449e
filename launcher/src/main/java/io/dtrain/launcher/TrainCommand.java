package io.dtrain.launcher;

import io.dtrain.config.ConfigLoader;
import io.dtrain.config.TrainConfig;
import io.dtrain.train.RunContext;
import io.dtrain.train.Trainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "train",
        mixinStandardHelpOptions = true,
        description = {
                "Train a GPT from a YAML run configuration.",
                "",
                "Prints the resolved configuration, then one line every training.log_interval steps (step, loss, lr,",
                "gradient norm, tokens/s, ms/step), evaluations every training.eval_interval steps, and writes",
                "checkpoints (named tensors + manifest) under OUTPUT_DIR/checkpoints. Per-step records go to",
                "OUTPUT_DIR/metrics/steps-rank0.jsonl.",
                "",
                "Examples:",
                "  dtrain train --config configs/gpt-tiny.yaml",
                "  dtrain train --config configs/gpt-tiny.yaml --set training.steps=500 --set optimizer.lr=1e-3",
                "  dtrain train --config configs/gpt-tiny.yaml --resume          # continue from the latest checkpoint"})
public final class TrainCommand implements Callable<Integer> {

    @Option(names = {"-c", "--config"}, required = true, paramLabel = "FILE",
            description = "YAML run configuration (see docs/config-reference.md).")
    Path config;

    @Option(names = "--set", paramLabel = "KEY=VALUE",
            description = "Override one configuration key by its dotted path, e.g. --set training.steps=200. Repeatable.")
    List<String> overrides = new ArrayList<>();

    @Option(names = "--resume", arity = "0..1", paramLabel = "CHECKPOINT", fallbackValue = "",
            description = "Continue exactly from a checkpoint: a step directory, a checkpoints directory or a run "
                    + "directory (default: the latest checkpoint under output.dir).")
    String resume;

    @Option(names = "--overwrite",
            description = "Start from scratch even if output.dir already holds checkpoints (they are deleted).")
    boolean overwrite;

    @Override
    public Integer call() throws IOException {
        PrintStream out = System.out;
        TrainConfig cfg = ConfigLoader.load(config, overrides);
        Path runDir = Path.of(cfg.output().dir());
        Path checkpoints = runDir.resolve("checkpoints");
        boolean hasCheckpoints = Files.isDirectory(checkpoints) && Files.exists(checkpoints.resolve("latest"));
        if (resume == null && hasCheckpoints && !overwrite) {
            throw new UserError("output.dir " + runDir + " already holds checkpoints: pass --resume to continue "
                    + "from the latest one, --overwrite to start again from scratch, or choose another output.dir");
        }
        if (resume == null && overwrite) {
            RunFiles.deleteRecursively(checkpoints);
            RunFiles.deleteRecursively(runDir.resolve("metrics"));
            for (String f : new String[] {"trace.json", "report.html", "report.md"}) {
                Files.deleteIfExists(runDir.resolve(f));
            }
        }
        Files.createDirectories(runDir);
        String resolved = ConfigLoader.toYaml(cfg);
        RunFiles.writeAtomically(runDir.resolve("config.resolved.yaml"), resolved);
        out.println("resolved config (" + config + (overrides.isEmpty() ? "" : " + " + overrides) + "):");
        out.print(resolved.indent(2));
        try (Trainer trainer = new Trainer(cfg, RunContext.single(), out)) {
            if (resume != null) {
                trainer.resumeFrom(resume.isEmpty() ? checkpoints : Path.of(resume));
            }
            long t0 = System.nanoTime();
            long startStep = trainer.step();
            double val = trainer.train();
            double secs = (System.nanoTime() - t0) / 1e9;
            out.printf(java.util.Locale.ROOT, "done: %d steps in %.1f s%s; run directory %s%n",
                    trainer.step() - startStep, secs,
                    Double.isNaN(val) ? "" : String.format(java.util.Locale.ROOT, ", final val loss %.4f", val),
                    runDir.toAbsolutePath());
        }
        return 0;
    }
}
