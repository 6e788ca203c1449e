package io.dtrain.launcher;

import io.dtrain.common.AtomicFiles;
import io.dtrain.common.UserFacingException;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.WorldConfig;
import io.dtrain.parallel.sched.SlurmEnvironment;
import io.dtrain.train.RunContext;
import io.dtrain.train.StopSignals;
import io.dtrain.train.TrainInputs;
import io.dtrain.train.TrainingException;
import io.dtrain.train.Trainer;
import io.dtrain.train.dp.SharedGradients;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "train",
        mixinStandardHelpOptions = true,
        description = {
                "Train a GPT from a YAML run configuration.",
                "",
                "Prints the resolved configuration, then one line every training.log_interval steps (step, loss, lr,",
                "gradient norm, tokens/s, ms/step), evaluations every training.eval_interval steps, and writes",
                "checkpoints (named tensors + manifest) under OUTPUT_DIR/checkpoints. Per-step records go to",
                "OUTPUT_DIR/metrics/steps-rank<r>.jsonl.",
                "",
                "Data parallel: with WORLD_SIZE > 1 in the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT,",
                "DTRAIN_JOB_SECRET, as 'dtrain launch' or a torchrun-style wrapper sets them) the process joins the job",
                "as one replica: gradients are averaged by AllReduce, rank 0 prints and writes checkpoints.",
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
                    + "directory (default: the latest checkpoint under output.dir); 'auto': from the latest checkpoint "
                    + "under output.dir if there is one, else from scratch (the default under Slurm or a restarting "
                    + "dtrain launch, so that one command line serves a job's whole life).")
    String resume;

    @Option(names = "--overwrite",
            description = "Start from scratch even if output.dir already holds checkpoints (they are deleted).")
    boolean overwrite;

    @Override
    public Integer call() throws IOException {
        PrintStream out = System.out;
        Map<String, String> env = SlurmEnvironment.current();
        int worldSize = intEnv(env, "WORLD_SIZE", 1);
        int rank = intEnv(env, "RANK", 0);
        // Nothing is printed or written before the configuration and its input paths are valid; deprecation lines
        // once per job, not once per rank.
        List<String> warnings = new ArrayList<>();
        RunConfig cfg;
        try {
            cfg = ConfigLoader.load(config, overrides, Path.of("").toAbsolutePath(), warnings::add, TrainInputs.CHECK);
        } catch (UserFacingException e) {
            throw failedBeforeJoining(env, worldSize, rank, e);
        }
        if (rank == 0) {
            warnings.forEach(System.err::println);
        }
        Path runDir = Path.of(cfg.output().dir());
        RunLog.use(runDir.resolve("logs"));
        Path checkpoints = runDir.resolve("checkpoints");
        boolean hasCheckpoints = Files.isDirectory(checkpoints) && Files.exists(checkpoints.resolve("latest"));
        if (intEnv(env, "DTRAIN_RESTART_COUNT", 0) > 0) {
            // restarted by dtrain launch --max-restarts: continue from the latest complete checkpoint, whatever the
            // command line said for the first round (--overwrite must not delete what the failed round saved)
            resume = "auto";
            overwrite = false;
        }
        String how = resume == null && !overwrite && underScheduler(env) ? "auto" : resume;
        if ("auto".equals(how)) {
            // a requeued or restarted job runs the same command line again: continue if there is something to continue
            resume = hasCheckpoints ? "" : null;
            if (rank == 0) {
                out.println(hasCheckpoints ? "resume auto: continuing from the latest checkpoint under " + checkpoints
                        : "resume auto: no checkpoint under " + checkpoints + " yet: starting from scratch");
            }
        }
        if (resume != null) {
            cfg = cfg.forResume();   // the weights come from the checkpoint, not model.init_from
        }
        // Every rank checks (same answer on a shared output.dir), so all fail at once instead of waiting at rendezvous.
        if (resume == null && hasCheckpoints && !overwrite) {
            throw new UserError("output.dir " + runDir + " already holds checkpoints: pass --resume to continue "
                    + "from the latest one, --overwrite to start again from scratch, or choose another output.dir");
        }
        if (rank != 0) {
            // Rank 0 prepares the run directory before it joins; joining waits for it, so nothing races.
            return train(cfg, runDir, checkpoints, worldSize, out);
        }
        if (resume == null && overwrite) {
            RunFiles.deleteRecursively(checkpoints);
            RunFiles.deleteRecursively(runDir.resolve("metrics"));
            for (String f : new String[] {"trace.json", "report.html", "report.md"}) {
                Files.deleteIfExists(runDir.resolve(f));
            }
        }
        String resolved = ConfigLoader.toYaml(cfg);
        try {
            Files.createDirectories(runDir);
            AtomicFiles.writeString(runDir.resolve("config.resolved.yaml"), resolved);
        } catch (IOException e) {
            throw new UserError("cannot write " + runDir.resolve("config.resolved.yaml") + ": " + e.getMessage()
                    + "; check that output.dir is writable and its disk has space", e);
        }
        out.println("resolved config (" + config + (overrides.isEmpty() ? "" : " + " + overrides) + "):");
        out.print(resolved.indent(2));
        return train(cfg, runDir, checkpoints, worldSize, out);
    }

    /**
     * Under a scheduler that may requeue or restart the job (Slurm, a restarting dtrain launch, torchrun's elastic
     * agent) the same command line must continue a run: there --resume auto is the default.
     */
    static boolean underScheduler(Map<String, String> env) {
        return env.containsKey("SLURM_JOB_ID") || "auto".equals(env.get("DTRAIN_RESUME"))
                || env.containsKey("TORCHELASTIC_RESTART_COUNT");
    }

    private int train(RunConfig cfg, Path runDir, Path checkpoints, int worldSize, PrintStream out) {
        StopSignals.install(out, stopDeadline());
        String placedBySlurm = SlurmEnvironment.describe(System.getenv());
        if (placedBySlurm != null) {
            out.println(placedBySlurm);
        }
        // WORLD_SIZE > 1 (set by dtrain launch, torchrun-style wrappers, Slurm scripts): join as a data-parallel rank.
        // With parallel.pipeline.stages = P > 1 the world is P stages x D replicas.
        // A failed collective writes its thread dump next to the run's other logs.
        try (ProcessGroup world = worldSize > 1 ? join(cfg) : null;
             RunContext context = world == null ? RunContext.single()
                     : RunContext.of(world, cfg.parallel().pipelineStages(), cfg.model().tieEmbeddings());
             Trainer trainer = new Trainer(cfg, context, out)) {
            if (resume != null) {
                trainer.resumeFrom(resume.isEmpty() ? checkpoints : Path.of(resume));
            }
            long t0 = System.nanoTime();
            long startStep = trainer.step();
            double val = trainer.train();
            double secs = (System.nanoTime() - t0) / 1e9;
            if (trainer.stoppedAt() >= 0) {
                return StopSignals.EXIT_REQUEUE;
            }
            if (!context.isLogger()) {
                return 0;
            }
            out.printf(java.util.Locale.ROOT, "done: %d steps in %.1f s%s; run directory %s%n",
                    trainer.step() - startStep, secs,
                    Double.isNaN(val) ? "" : String.format(java.util.Locale.ROOT, ", final val loss %.4f", val),
                    runDir.toAbsolutePath());
        } catch (OutOfMemoryError e) {
            // The trainer reports running out of memory with its estimate; this is the rest (joining, resuming).
            throw new TrainingException("out of memory (" + e.getMessage() + "); lower training.micro_batch, or raise"
                    + " the limits (DTRAIN_JAVA_OPTS=-Xmx... -Dorg.bytedeco.javacpp.maxphysicalbytes=...; dtrain launch:"
                    + " --memory-per-worker)", e);
        }
        return 0;
    }

    /**
     * One rank of several cannot load its configuration or see its input (say data.train is missing on its node): its
     * own line names its rank and host, and the others learn it through the store and fail naming it, instead of
     * waiting for it until the rendezvous timeout.
     */
    private static UserFacingException failedBeforeJoining(Map<String, String> env, int worldSize, int rank,
                                                           UserFacingException e) {
        if (worldSize <= 1) {
            return e;
        }
        WorldConfig world;
        try {
            world = WorldConfig.fromEnvironment(env);
        } catch (UserFacingException bad) {
            return e;
        }
        ProcessGroup.reportFailedBringUp(world, e.getMessage());
        return new UserError("rank " + rank + " on " + world.nodeId() + ": " + e.getMessage(), e);
    }

    /**
     * Joins the job; every rank then checks that all resolved the same configuration, and hold the same settings that
     * must match ({@code DTRAIN_SHM_GRADIENTS}), before building anything.
     */
    private static ProcessGroup join(RunConfig cfg) {
        ProcessGroup world = ProcessGroup.init(WorldConfig.fromEnvironment(SlurmEnvironment.current()).withLogDir(RunLog.directory()));
        try {
            world.requireSameEverywhere("run config", flatConfig(cfg));
            world.requireSameSettings("training", SharedGradients.setting(System.getenv()));
            return world;
        } catch (RuntimeException e) {
            world.close();
            throw e;
        }
    }

    /** The resolved configuration as flat keys (section.key -> value), compared across ranks at rendezvous. */
    private static Map<String, String> flatConfig(RunConfig cfg) {
        Map<String, String> flat = new java.util.TreeMap<>();
        ConfigLoader.toMap(cfg).forEach((section, keys) -> {
            if (keys instanceof Map<?, ?> m) {
                m.forEach((k, v) -> flat.put(section + "." + k, String.valueOf(v)));
            } else {
                flat.put(section, String.valueOf(keys));
            }
        });
        return flat;
    }

    /** DTRAIN_STOP_DEADLINE (seconds, default 120): how long a stop signal leaves to write the checkpoint. */
    private static java.time.Duration stopDeadline() {
        String v = System.getenv("DTRAIN_STOP_DEADLINE");
        if (v == null || v.isBlank()) {
            return java.time.Duration.ofSeconds(120);
        }
        try {
            return java.time.Duration.ofSeconds(Long.parseLong(v.strip().replaceAll("s$", "")));
        } catch (NumberFormatException e) {
            throw new UserError("DTRAIN_STOP_DEADLINE='" + v + "' must be a number of seconds, e.g. 120");
        }
    }

    private static int intEnv(Map<String, String> env, String name, int defaultValue) {
        String v = env.get(name);
        if (v == null || v.isBlank()) {
            return defaultValue;
        }
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new UserError("environment variable " + name + "='" + v + "' is not an integer");
        }
    }
}
