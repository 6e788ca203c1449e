package io.dtrain.train;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** End-to-end training on gpt-micro (float64) over the built-in sample corpus. */
class TrainerTest {
    static final Path REPO = Path.of(System.getProperty("dtrain.repo.root", "..")).toAbsolutePath().normalize();

    static RunConfig micro(Path out, String... overrides) {
        List<String> o = new ArrayList<>(List.of("model.dtype=float64", "output.dir=" + out,
                "training.eval_interval=0", "training.checkpoint_interval=0", "training.log_interval=1"));
        o.addAll(List.of(overrides));
        return ConfigLoader.load(REPO.resolve("configs/gpt-micro.yaml"), o, REPO);
    }

    static final PrintStream QUIET = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);

    static List<StepStats> run(Trainer t, long steps) {
        List<StepStats> out = new ArrayList<>();
        for (long i = 0; i < steps; i++) {
            out.add(t.trainStep());
        }
        return out;
    }

    static double[] values(INDArray a) {
        return a.dup().data().asDouble();
    }

    @Test
    void resumedRunRepeatsTheUninterruptedRunExactly(@TempDir Path tmp) {
        // Dropout on: its masks are keyed by (seed, step, sample), so resume must reproduce them too.
        RunConfig cfg = micro(tmp.resolve("a"), "training.steps=6", "model.dropout=0.1");
        List<StepStats> full;
        double[] fullParams;
        try (Trainer t = new Trainer(cfg, RunContext.single(), QUIET)) {
            full = run(t, 6);
            fullParams = values(t.params());
        }
        RunConfig cfgB = micro(tmp.resolve("b"), "training.steps=6", "model.dropout=0.1");
        try (Trainer t = new Trainer(cfgB, RunContext.single(), QUIET)) {
            run(t, 3);
            t.saveCheckpoint();
        }
        List<StepStats> resumed;
        double[] resumedParams;
        try (Trainer t = new Trainer(cfgB, RunContext.single(), QUIET)) {
            t.resumeFrom(tmp.resolve("b"));
            assertEquals(3, t.step());
            resumed = run(t, 3);
            resumedParams = values(t.params());
        }
        for (int i = 0; i < 3; i++) {
            assertEquals(full.get(3 + i).step(), resumed.get(i).step());
            assertEquals(full.get(3 + i).loss(), resumed.get(i).loss(), 0.0, "loss of step " + (4 + i));
            assertEquals(full.get(3 + i).gradNorm(), resumed.get(i).gradNorm(), 0.0, "grad norm of step " + (4 + i));
        }
        assertArrayEquals(fullParams, resumedParams, 0.0);
        assertNotEquals(full.get(0).loss(), full.get(5).loss());
    }

    @Test
    void accumulatedMicroBatchesEqualOneLargeBatch(@TempDir Path tmp) {
        RunConfig accumulated = micro(tmp.resolve("a"), "training.steps=3", "training.global_batch=8",
                "training.micro_batch=2", "model.dropout=0.1");
        RunConfig single = micro(tmp.resolve("b"), "training.steps=3", "training.global_batch=8",
                "training.micro_batch=8", "model.dropout=0.1");
        List<StepStats> a;
        List<StepStats> b;
        double[] pa;
        double[] pb;
        try (Trainer t = new Trainer(accumulated, RunContext.single(), QUIET)) {
            assertEquals(4, t.accumulationSteps());
            a = run(t, 3);
            pa = values(t.params());
        }
        try (Trainer t = new Trainer(single, RunContext.single(), QUIET)) {
            assertEquals(1, t.accumulationSteps());
            b = run(t, 3);
            pb = values(t.params());
        }
        for (int i = 0; i < 3; i++) {
            assertEquals(b.get(i).loss(), a.get(i).loss(), 1e-12 * Math.abs(b.get(i).loss()), "loss of step " + (i + 1));
            assertEquals(b.get(i).gradNorm(), a.get(i).gradNorm(), 1e-10 * b.get(i).gradNorm(), "grad norm of step " + (i + 1));
        }
        for (int i = 0; i < pa.length; i++) {
            assertEquals(pb[i], pa[i], 1e-11, "parameter element " + i);
        }
    }

    @Test
    void trainWritesStepRecordsEvaluationsAndCheckpoints(@TempDir Path tmp) throws Exception {
        RunConfig cfg = micro(tmp.resolve("run"), "training.steps=4", "training.eval_interval=2",
                "training.checkpoint_interval=2", "output.keep_checkpoints=1");
        ByteArrayOutputStream console = new ByteArrayOutputStream();
        double val;
        try (Trainer t = new Trainer(cfg, RunContext.single(), new PrintStream(console, true, StandardCharsets.UTF_8))) {
            val = t.train();
        }
        assertTrue(Double.isFinite(val) && val > 0 && val < Math.log(257) + 0.5, "val loss " + val);
        String text = console.toString(StandardCharsets.UTF_8);
        assertTrue(text.contains("step     4/4 | loss "), text);
        assertTrue(text.contains("eval step 2 | val loss "), text);
        assertTrue(text.contains("eval step 4 | val loss "), text);
        List<String> records = Files.readAllLines(tmp.resolve("run/metrics/steps-rank0.jsonl"));
        assertEquals(6, records.size(), "four steps and two evaluations");
        List<String> evals = records.stream().filter(l -> l.startsWith("{\"type\":\"eval\"")).toList();
        assertEquals(2, evals.size(), records.toString());
        assertTrue(evals.get(0).contains("\"step\":2,") && evals.get(1).contains("\"step\":4,"), evals.toString());
        assertEquals(val, jsonNumber(evals.get(1), "val_loss"), 1e-12, "the final evaluation's record");
        List<String> steps = records.stream().filter(l -> l.startsWith("{\"type\":\"step\"")).toList();
        assertEquals(4, steps.size());
        assertTrue(steps.get(3).contains("\"step\":3"), steps.get(3));
        for (String line : steps) {
            // forward and backward are timed apart (the fused last-stage call is split at its first backward op)
            double compute = jsonNumber(line, "compute_ms");
            double forward = jsonNumber(line, "forward_ms");
            double backward = jsonNumber(line, "backward_ms");
            assertTrue(forward > 0 && backward > 0, line);
            assertTrue(forward + backward <= compute + 0.5, "forward + backward within compute: " + line);
            assertTrue(forward + backward >= 0.8 * compute, "they account for the compute time: " + line);
        }
        Checkpoint ck = Checkpoint.load(tmp.resolve("run"));
        assertEquals(4, ck.step());
        try (var files = Files.list(tmp.resolve("run/checkpoints"))) {
            assertEquals(1, files.filter(p -> p.getFileName().toString().startsWith("step-")).count(),
                    "keep_checkpoints=1 keeps only the newest");
        }
        // The resolved config travels with the checkpoint and reloads to the same config.
        RunConfig stored = ConfigLoader.fromResolvedYaml((String) ck.extra().get("config_yaml"));
        assertEquals(cfg, stored);
    }

    static double jsonNumber(String line, String key) {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"" + key + "\":([-0-9.eE]+)").matcher(line);
        assertTrue(m.find(), key + " in " + line);
        return Double.parseDouble(m.group(1));
    }

    @Test
    void nonFiniteLossStopsNamingTheStepOrIsSkipped(@TempDir Path tmp) {
        RunConfig stop = micro(tmp.resolve("a"), "training.steps=4", "optimizer.lr=1e200", "optimizer.min_lr=0",
                "optimizer.grad_clip=0", "schedule.warmup_steps=0");
        try (Trainer t = new Trainer(stop, RunContext.single(), QUIET)) {
            TrainingException e = assertThrows(TrainingException.class, () -> run(t, 4));
            assertTrue(e.getMessage().matches("step \\d: non-finite .*training.on_non_finite=skip.*"), e.getMessage());
        }
        RunConfig skip = micro(tmp.resolve("b"), "training.steps=4", "optimizer.lr=1e200", "optimizer.min_lr=0",
                "optimizer.grad_clip=0", "schedule.warmup_steps=0", "training.on_non_finite=skip");
        try (Trainer t = new Trainer(skip, RunContext.single(), QUIET)) {
            List<StepStats> s = run(t, 4);
            assertTrue(s.stream().anyMatch(StepStats::skipped), "some step is skipped");
        }
    }
}
