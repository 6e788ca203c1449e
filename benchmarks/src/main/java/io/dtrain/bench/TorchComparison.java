package io.dtrain.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.dtrain.common.AtomicFiles;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.data.loader.MicroBatch;
import io.dtrain.data.loader.PackedTokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;
import io.dtrain.train.Trainer;
import io.dtrain.train.TrainTokenizer;
import org.nd4j.linalg.factory.Nd4j;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;

/**
 * dtrain's GPT training step against the PyTorch reference ({@code benchmarks/pytorch/gpt_reference.py}) on the
 * same initial weights and the same token windows: (a) a Trainer built from the config writes its step-0 checkpoint
 * and the windows of its first steps; (b) dtrain trains those steps in-process; (c) the reference trains them
 * from the checkpoint; (d) losses, gradient norms and learning rates are compared step by step against
 * tolerances; (e) the median tokens/s of full training steps of both, same shapes and thread count.
 *
 * <p>Dropout is forced to 0 (masks cannot match across frameworks). {@code --precision float64} swaps the
 * benchmark shape for a small float64 model with two micro-batches per step, where agreement to ~1e-10 shows the
 * semantics are the same independent of float32 rounding. Run it through {@code benchmarks/compare-pytorch.sh}.
 */
@Command(name = "torch-comparison", mixinStandardHelpOptions = true,
        description = "Compare dtrain's GPT training steps with the PyTorch reference: agreement and tokens/s.")
public final class TorchComparison implements Callable<Integer> {
    /** The small float64 shape of the exactness check; accumulation 2 also checks the micro-batch mean. */
    static final List<String> FLOAT64_SHAPE = List.of("model.dtype=float64", "model.seq_len=64", "model.d_model=64",
            "model.n_layer=2", "model.n_head=4", "training.micro_batch=4", "training.global_batch=8");

    @Option(names = "--config", description = "dtrain YAML config (default: ${DEFAULT-VALUE})")
    Path config = Path.of("configs/gpt-cpu-small.yaml");

    @Option(names = "--set", description = "extra config override key=value (repeatable), applied last")
    List<String> overrides = new ArrayList<>();

    @Option(names = "--precision", description = "float32 (the config's shape, one micro-batch per step) or "
            + "float64 (small shape, 2 micro-batches per step); default ${DEFAULT-VALUE}")
    String precision = "float32";

    @Option(names = "--steps", description = "steps compared (default ${DEFAULT-VALUE})")
    int steps = 20;

    @Option(names = "--speed-steps", description = "timed steps of the speed comparison, 0 = none (default ${DEFAULT-VALUE})")
    int speedSteps = 15;

    @Option(names = "--warmup", description = "untimed steps before the timed ones (default ${DEFAULT-VALUE})")
    int warmup = 3;

    @Option(names = "--threads", description = "torch.set_num_threads; ND4J takes OMP_NUM_THREADS, which the script "
            + "sets to the same value (default ${DEFAULT-VALUE})")
    int threads = 2;

    @Option(names = "--python", description = "python with torch (default ${DEFAULT-VALUE})")
    String python = "/usr/bin/python3";

    @Option(names = "--reference", description = "the reference script (default ${DEFAULT-VALUE})")
    Path reference = Path.of("benchmarks/pytorch/gpt_reference.py");

    @Option(names = "--work-dir", description = "checkpoint, batches and results go here (default ${DEFAULT-VALUE})")
    Path workDir = Path.of("benchmarks/target/torch-comparison");

    @Option(names = "--tol-first", description = "max |difference| of step 1's loss and grad norm "
            + "(default 1e-5 float32, 1e-10 float64)")
    Double tolFirst;

    @Option(names = "--tol-loss", description = "max |difference| of every compared step's loss "
            + "(default 1e-4 float32, 1e-10 float64)")
    Double tolLoss;

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    private static final PrintStream DISCARD = new PrintStream(OutputStream.nullOutputStream());

    public static void main(String[] args) {
        System.exit(new CommandLine(new TorchComparison()).execute(args));
    }

    @Override
    public Integer call() throws Exception {
        boolean float64 = switch (precision) {
            case "float32" -> false;
            case "float64" -> true;
            default -> throw new CommandLine.ParameterException(new CommandLine(this),
                    "--precision must be float32 or float64, got " + precision);
        };
        double firstTol = tolFirst != null ? tolFirst : float64 ? 1e-10 : 1e-5;
        double lossTol = tolLoss != null ? tolLoss : float64 ? 1e-10 : 1e-4;
        if (steps < 1 || warmup < 0 || speedSteps < 0) {
            throw new CommandLine.ParameterException(new CommandLine(this),
                    "--steps must be >= 1 and --warmup, --speed-steps >= 0");
        }
        Path dir = workDir.resolve(precision).toAbsolutePath();
        deleteTree(dir);
        Files.createDirectories(dir);
        String loadBefore = loadAverage();

        List<String> allOverrides = comparisonOverrides(float64, dir.resolve("run"));
        RunConfig cfg = ConfigLoader.load(config, allOverrides);
        int dtrainSteps = Math.max(steps, speedSteps > 0 ? warmup + speedSteps : 0);
        int nd4jThreads = Nd4j.getEnvironment().maxMasterThreads();
        System.out.printf(Locale.ROOT, "comparison: %s, d_model %d, %d layers, %d heads, seq_len %d, %d x %d "
                        + "sequences per step, %d steps compared; ND4J threads %d, torch threads %d%n",
                cfg.model().dtype(), cfg.model().dModel(), cfg.model().nLayer(), cfg.model().nHead(),
                cfg.model().seqLen(), cfg.accumulationSteps(1), cfg.microBatch(1), steps, nd4jThreads, threads);

        // (a) + (b): identical starting point for both, then dtrain's own steps.
        List<StepStats> dtrain = new ArrayList<>();
        Path checkpoint;
        Path batches = dir.resolve("batches.json");
        try (Trainer trainer = new Trainer(cfg, RunContext.single(), System.out)) {
            checkpoint = trainer.saveCheckpoint();
            writeBatches(cfg, trainer.model().layout(), dtrainSteps, batches);
            PrintStream console = System.out;
            for (int s = 0; s < dtrainSteps; s++) {
                // SameDiff M2.1 prints a line per op to System.out when it first builds the gradient graph.
                System.setOut(DISCARD);
                StepStats st;
                try {
                    st = trainer.trainStep();
                } finally {
                    System.setOut(console);
                }
                dtrain.add(st);
                console.printf(Locale.ROOT, "dtrain step %d: loss %.6f grad norm %.6f lr %.3e %.0f ms%n",
                        s + 1, st.loss(), st.gradNorm(), st.lr(), st.stepMs());
                console.flush();
            }
        }
        System.gc();

        // (c): the reference on the same checkpoint and windows.
        JsonNode check = runReference("check", checkpoint, batches, List.of("--steps", String.valueOf(steps)));
        JsonNode speed = float64 || speedSteps == 0 ? null : runReference("speed", checkpoint, batches,
                List.of("--steps", String.valueOf(speedSteps), "--warmup", String.valueOf(warmup)));

        // (d) agreement.
        Map<String, Object> summary = new LinkedHashMap<>();
        JsonNode torchSteps = check.get("steps");
        if (torchSteps.size() != steps) {
            throw new IllegalStateException("the reference returned " + torchSteps.size() + " steps, expected " + steps);
        }
        List<String> failures = new ArrayList<>();
        double maxLossDiff = 0;
        double maxNormRel = 0;
        List<Map<String, Object>> rows = new ArrayList<>();
        System.out.printf(Locale.ROOT, "%n%4s  %12s %12s %9s  %10s %10s %9s  %s%n", "step", "dtrain loss", "torch loss",
                "|diff|", "dtrain |g|", "torch |g|", "|diff|", "lr");
        for (int s = 0; s < steps; s++) {
            StepStats d = dtrain.get(s);
            JsonNode t = torchSteps.get(s);
            double tLoss = t.get("loss").asDouble();
            double tNorm = t.get("grad_norm").asDouble();
            double tLr = t.get("lr").asDouble();
            double lossDiff = Math.abs(d.loss() - tLoss);
            double normDiff = Math.abs(d.gradNorm() - tNorm);
            maxLossDiff = Math.max(maxLossDiff, lossDiff);
            maxNormRel = Math.max(maxNormRel, normDiff / Math.abs(tNorm));
            System.out.printf(Locale.ROOT, "%4d  %12.8f %12.8f %9.2e  %10.6f %10.6f %9.2e  %.4e%n", s + 1, d.loss(),
                    tLoss, lossDiff, d.gradNorm(), tNorm, normDiff, d.lr());
            if (s == 0 && (lossDiff > firstTol || normDiff > firstTol)) {
                failures.add(String.format(Locale.ROOT, "step 1: loss differs by %.3e, grad norm by %.3e (tolerance %.0e)",
                        lossDiff, normDiff, firstTol));
            }
            if (lossDiff > lossTol) {
                failures.add(String.format(Locale.ROOT, "step %d: loss differs by %.3e (tolerance %.0e)", s + 1, lossDiff, lossTol));
            }
            if (Math.abs(d.lr() - tLr) > 1e-15 * Math.abs(tLr)) {
                failures.add(String.format(Locale.ROOT, "step %d: lr %.17g (dtrain) vs %.17g (reference): the schedules differ",
                        s + 1, d.lr(), tLr));
            }
            rows.add(Map.of("step", s + 1, "dtrain_loss", d.loss(), "torch_loss", tLoss, "dtrain_grad_norm",
                    d.gradNorm(), "torch_grad_norm", tNorm, "torch_clip_grad_norm", t.path("clip_grad_norm").asDouble(),
                    "lr", d.lr()));
        }
        StepStats first = dtrain.get(0);
        JsonNode t0 = torchSteps.get(0);
        System.out.printf(Locale.ROOT, "%nagreement (%s): step 1 |loss diff| %.2e, |grad norm diff| %.2e (tolerance %.0e); "
                        + "max |loss diff| over %d steps %.2e (tolerance %.0e); max relative grad norm diff %.2e%n",
                cfg.model().dtype(), Math.abs(first.loss() - t0.get("loss").asDouble()),
                Math.abs(first.gradNorm() - t0.get("grad_norm").asDouble()), firstTol, steps, maxLossDiff, lossTol, maxNormRel);
        summary.put("precision", precision);
        summary.put("config", config.toString());
        summary.put("overrides", allOverrides);
        summary.put("step1_loss_diff", Math.abs(first.loss() - t0.get("loss").asDouble()));
        summary.put("step1_grad_norm_diff", Math.abs(first.gradNorm() - t0.get("grad_norm").asDouble()));
        summary.put("max_loss_diff", maxLossDiff);
        summary.put("max_grad_norm_rel_diff", maxNormRel);
        summary.put("tolerance_step1", firstTol);
        summary.put("tolerance_loss", lossTol);
        summary.put("steps", rows);
        summary.put("torch", Map.of("version", check.get("torch").asText(), "threads", check.get("threads").asInt(),
                "blas", check.get("blas").asText(), "dtype", check.get("dtype").asText()));
        summary.put("nd4j_threads", nd4jThreads);

        // (e) speed: the same full training steps (forward, backward, clip, AdamW), median after warm-up.
        if (speed != null) {
            long tokensPerStep = (long) cfg.training().globalBatch() * cfg.model().seqLen();
            double[] dtrainMs = dtrain.subList(warmup, warmup + speedSteps).stream().mapToDouble(StepStats::stepMs).toArray();
            double dtrainMedianMs = median(dtrainMs);
            double dtrainTps = tokensPerStep / (dtrainMedianMs / 1000.0);
            double torchTps = speed.get("median_tokens_per_s").asDouble();
            System.out.printf(Locale.ROOT, "speed: %,d tokens per step, median of %d steps after %d warm-up: dtrain %.0f tok/s "
                            + "(%.0f ms/step), PyTorch %.0f tok/s (%.0f ms/step); dtrain / PyTorch = %.3f%n",
                    tokensPerStep, speedSteps, warmup, dtrainTps, dtrainMedianMs, torchTps,
                    speed.get("median_step_ms").asDouble(), dtrainTps / torchTps);
            // On a busy machine the fastest step is the steadier figure; the median is the headline.
            double dtrainMinMs = Arrays.stream(dtrainMs).min().orElseThrow();
            double torchMinMs = 1e300;
            for (JsonNode ms : speed.get("step_ms")) {
                torchMinMs = Math.min(torchMinMs, ms.asDouble());
            }
            System.out.printf(Locale.ROOT, "speed (fastest step): dtrain %.0f tok/s, PyTorch %.0f tok/s; ratio %.3f%n",
                    tokensPerStep / (dtrainMinMs / 1000.0), tokensPerStep / (torchMinMs / 1000.0), torchMinMs / dtrainMinMs);
            Map<String, Object> sp = new LinkedHashMap<>();
            sp.put("tokens_per_step", tokensPerStep);
            sp.put("warmup", warmup);
            sp.put("timed_steps", speedSteps);
            sp.put("dtrain_step_ms", dtrainMs);
            sp.put("dtrain_median_tokens_per_s", dtrainTps);
            sp.put("torch_step_ms", speed.get("step_ms"));
            sp.put("torch_median_tokens_per_s", torchTps);
            sp.put("ratio_dtrain_over_torch", dtrainTps / torchTps);
            summary.put("speed", sp);
        }
        String loadAfter = loadAverage();
        System.out.println("machine: " + cpuModel() + ", " + Runtime.getRuntime().availableProcessors()
                + " cores; load average before " + loadBefore + ", after " + loadAfter + "; dtrain JVM peak RSS "
                + peakRss());
        summary.put("machine", Map.of("cpu", cpuModel(), "cores", Runtime.getRuntime().availableProcessors(),
                "load_average_before", loadBefore, "load_average_after", loadAfter, "dtrain_peak_rss", peakRss()));
        summary.put("passed", failures.isEmpty());
        summary.put("failures", failures);
        AtomicFiles.write(dir.resolve("comparison.json"), JSON.writeValueAsBytes(summary));
        System.out.println("results: " + dir.resolve("comparison.json"));
        if (!failures.isEmpty()) {
            System.out.println("DISAGREEMENT (" + failures.size() + "):");
            failures.stream().limit(10).forEach(f -> System.out.println("  " + f));
            return 1;
        }
        System.out.println("AGREE: dtrain matches the PyTorch reference within the tolerances");
        return 0;
    }

    /** Overrides that make the runs comparable; the user's --set come last and win. */
    List<String> comparisonOverrides(boolean float64, Path runDir) {
        List<String> o = new ArrayList<>(List.of("model.dropout=0", "output.dir=" + runDir, "data.val=",
                "training.eval_interval=0", "training.checkpoint_interval=0"));
        if (float64) {
            o.addAll(FLOAT64_SHAPE);
        } else {
            // One micro-batch per step: a step is exactly one forward/backward on both sides.
            int micro = ConfigLoader.load(config, overrides).microBatch(1);
            o.add("model.dtype=float32");
            o.add("training.global_batch=" + micro);
        }
        o.addAll(overrides);
        return o;
    }

    /**
     * The windows the Trainer trains on, as int32 little-endian [steps][micro_batches][micro_batch][seq_len + 1]
     * in {@code <name>.bin}, described by {@code meta} (JSON) with dtrain's parameter kinds (the decay groups).
     * Opens its own loader with the Trainer's arguments: the order is a pure function of data, batch and seed.
     */
    static void writeBatches(RunConfig cfg, ParamLayout layout, int steps, Path meta) throws IOException {
        int seqLen = cfg.model().seqLen();
        int accumulation = cfg.accumulationSteps(1);
        int micro = cfg.microBatch(1);
        PackedTokenDataset ds = TokenDatasets.open(cfg.data().train(), TrainTokenizer.forConfig(cfg), seqLen,
                BadRecordPolicy.parse(cfg.data().onBadRecord()));
        ByteBuffer buf = ByteBuffer.allocate(Math.multiplyExact(steps * accumulation * micro, (seqLen + 1) * 4))
                .order(ByteOrder.LITTLE_ENDIAN);
        try (BatchLoader loader = new BatchLoader(ds, cfg.training().globalBatch(), micro, 0, 1, cfg.data().seed())) {
            for (int s = 0; s < steps; s++) {
                for (int j = 0; j < accumulation; j++) {
                    MicroBatch mb = loader.microBatch(s, j);
                    for (int[] window : mb.windows()) {
                        for (int token : window) {
                            buf.putInt(token);
                        }
                    }
                }
            }
        }
        String bin = meta.getFileName().toString().replaceFirst("\\.json$", "") + ".bin";
        AtomicFiles.write(meta.resolveSibling(bin), buf.array());
        Map<String, String> kinds = new LinkedHashMap<>();
        for (ParamSpec s : layout.specs()) {
            kinds.put(s.name(), s.kind().name());
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("file", bin);
        m.put("dtype", "int32");
        m.put("steps", steps);
        m.put("micro_batches", accumulation);
        m.put("micro_batch", micro);
        m.put("window", seqLen + 1);
        m.put("param_kinds", kinds);
        AtomicFiles.write(meta, JSON.writeValueAsBytes(m));
    }

    /** Runs gpt_reference.py; its stderr goes to ours, its stdout's last line is the JSON result. */
    private JsonNode runReference(String mode, Path checkpoint, Path batches, List<String> extra)
            throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(python, reference.toString(), mode, "--checkpoint",
                checkpoint.toString(), "--batches", batches.toString(), "--threads", String.valueOf(threads)));
        cmd.addAll(extra);
        System.out.println("running: " + String.join(" ", cmd));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT);
        pb.environment().put("OMP_NUM_THREADS", String.valueOf(threads));
        Process p = pb.start();
        String stdout;
        try (InputStream in = p.getInputStream()) {
            stdout = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        int rc = p.waitFor();
        String[] lines = stdout.strip().split("\n");
        if (rc != 0 || lines.length == 0 || !lines[lines.length - 1].startsWith("{")) {
            throw new IllegalStateException(python + " " + reference + " " + mode + " failed (exit code " + rc
                    + "); its output: " + stdout.strip() + " (is torch installed for " + python + "?)");
        }
        return JSON.readTree(lines[lines.length - 1]);
    }

    static double median(double[] values) {
        if (values.length == 0) {
            throw new IllegalArgumentException("median of no values");
        }
        double[] v = values.clone();
        Arrays.sort(v);
        int n = v.length;
        return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    }

    private static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException e) {
            return "unknown";
        }
    }

    /** VmHWM of this JVM (heap + ND4J's off-heap arrays). */
    private static String peakRss() {
        try (Stream<String> lines = Files.lines(Path.of("/proc/self/status"))) {
            return lines.filter(l -> l.startsWith("VmHWM:")).map(l -> l.substring(6).trim()).findFirst().orElse("unknown");
        } catch (IOException | UncheckedIOException e) {
            return "unknown";
        }
    }

    private static String cpuModel() {
        try (Stream<String> lines = Files.lines(Path.of("/proc/cpuinfo"))) {
            return lines.filter(l -> l.startsWith("model name")).map(l -> l.substring(l.indexOf(':') + 1).trim())
                    .findFirst().orElse("unknown CPU");
        } catch (IOException | UncheckedIOException e) {
            return "unknown CPU";
        }
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(dir)) {
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }
}
