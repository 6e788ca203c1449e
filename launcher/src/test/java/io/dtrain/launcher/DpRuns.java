package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.model.GptModel;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Shared pieces of the data-parallel tests: the gpt-micro run configuration and what a run left on disk. */
final class DpRuns {
    static final Path REPO = Path.of(System.getProperty("dtrain.repo.root", "..")).toAbsolutePath().normalize();
    static final ObjectMapper JSON = new ObjectMapper();

    private DpRuns() {
    }

    /** --set overrides of a short float64 gpt-micro run with dropout, writing into {@code runDir}. */
    static List<String> microOverrides(Path runDir, int globalBatch, int steps, String... more) {
        List<String> o = new ArrayList<>(List.of("model.dtype=float64", "model.dropout=0.1",
                "training.global_batch=" + globalBatch, "training.micro_batch=2", "training.steps=" + steps,
                "training.eval_interval=0", "training.eval_sequences=6", "training.checkpoint_interval=0",
                "metrics.peak_flops=1e9", "metrics.interval_ms=0", "metrics.trace=false", "output.dir=" + runDir));
        o.addAll(List.of(more));
        return o;
    }

    /** "train --config configs/gpt-micro.yaml --set ..." as arguments. */
    static List<String> trainArgs(List<String> overrides, String... extra) {
        List<String> args = new ArrayList<>(List.of("train", "--config", "configs/gpt-micro.yaml"));
        for (String o : overrides) {
            args.add("--set");
            args.add(o);
        }
        args.addAll(List.of(extra));
        return args;
    }

    /** The step records of a rank (its steps file also holds evaluation records). */
    static List<JsonNode> steps(Path runDir, int rank) {
        try {
            List<JsonNode> out = new ArrayList<>();
            for (String line : Files.readAllLines(runDir.resolve("metrics/steps-rank" + rank + ".jsonl"))) {
                JsonNode record = JSON.readTree(line);
                if (!record.path("type").asText().equals("eval")) {   // step records only
                    out.add(record);
                }
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static JsonNode summary(Path runDir, int rank) {
        try {
            return JSON.readTree(runDir.resolve("metrics/dp-rank" + rank + ".json").toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The parameters of the latest checkpoint of a run, as float64 values. */
    static double[] finalParams(Path runDir, List<String> overrides) {
        RunConfig cfg = ConfigLoader.load(REPO.resolve("configs/gpt-micro.yaml"), overrides, REPO);
        try (GptModel model = new GptModel(cfg.model())) {
            INDArray params = model.newFlatBuffer();
            Checkpoint.load(runDir).readParams(model.layout(), params);
            return params.data().asDouble();
        }
    }

    /** The final parameters of two runs agree element by element within 1e-9 relative (1e-12 absolute near 0). */
    static void assertSameFinalParams(Path expectedRun, List<String> expectedSets, Path actualRun, List<String> actualSets) {
        double[] expected = finalParams(expectedRun, expectedSets);
        double[] actual = finalParams(actualRun, actualSets);
        if (expected.length != actual.length) {
            throw new AssertionError("final parameters: " + expected.length + " vs " + actual.length + " elements");
        }
        for (int i = 0; i < expected.length; i++) {
            org.junit.jupiter.api.Assertions.assertEquals(expected[i], actual[i],
                    1e-9 * Math.max(1e-3, Math.abs(expected[i])), "parameter element " + i);
        }
    }

    static void assertClose(double expected, double actual, double relTol, String what) {
        double scale = Math.max(Math.abs(expected), 1e-12);
        if (!(Math.abs(expected - actual) <= relTol * scale)) {
            throw new AssertionError(what + ": expected " + expected + " but was " + actual + " (relative difference "
                    + Math.abs(expected - actual) / scale + " > " + relTol + ")");
        }
    }
}
