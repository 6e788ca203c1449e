package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.fused.FusedStage;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.nd4j.linalg.api.ndarray.INDArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * training.recompute: blocks gives the gradients of no recomputation, with either engine, whole or split into
 * stages, and holds less activation memory.
 */
class RecomputeTest {
    @ParameterizedTest(name = "{0} {1}-norm dropout {2} {3} stages {4}")
    @CsvSource({
            "fused, pre, 0.1, float64, 3",
            "fused, post, 0.0, float32, 3",
            "fused, pre, 0.1, float64, 1-2",
            "samediff, pre, 0.1, float64, 3",
            "samediff, post, 0.1, float64, 2-1"})
    void recomputedGradientsEqualKeptOnes(String engine, String norm, double dropout, String dtype, String stages) {
        ModelConfig cfg = TestModels.withEngine(
                TestModels.config(23, 16, 16, 3, 2, norm, "gelu", dropout, true, true, 0.3, dtype), engine);
        int[] blocks = java.util.Arrays.stream(stages.split("-")).mapToInt(Integer::parseInt).toArray();
        int[][] windows = TestModels.randomWindows(9, 3, 16, 23);
        long[] samples = {4, 8, 15};
        INDArray kept;
        INDArray recomputed;
        double keptLoss;
        double recomputedLoss;
        long keptBytes;
        long recomputedBytes;
        try (GptModel plain = new GptModel(cfg, blocks, false); GptModel again = new GptModel(cfg, blocks, true)) {
            INDArray params = plain.newFlatBuffer();
            plain.initParams(params, 3);
            plain.setParams(params);
            again.setParams(params);
            kept = plain.newFlatBuffer();
            recomputed = again.newFlatBuffer();
            // two micro-batches per step, as gradient accumulation runs them
            keptLoss = plain.forwardBackward(windows, samples, 2, 5, kept);
            keptLoss += plain.forwardBackward(windows, samples, 3, 5, kept);
            recomputedLoss = again.forwardBackward(windows, samples, 2, 5, recomputed);
            recomputedLoss += again.forwardBackward(windows, samples, 3, 5, recomputed);
            keptBytes = activationBytes(plain);
            recomputedBytes = activationBytes(again);
        }
        if ("fused".equals(engine)) {
            // the same kernels on the same inputs: bit for bit
            assertEquals(keptLoss, recomputedLoss, 0.0);
            assertEquals(0.0, kept.sub(recomputed).amaxNumber().doubleValue(), 0.0, "gradients");
            assertTrue(recomputedBytes < keptBytes, "activation bytes " + recomputedBytes + " vs " + keptBytes);
        } else {
            // SameDiff recomputes one-block graphs instead of the stage's graph: the same numbers up to rounding
            assertEquals(keptLoss, recomputedLoss, 1e-12 * Math.abs(keptLoss));
            double scale = kept.amaxNumber().doubleValue();
            assertTrue(kept.sub(recomputed).amaxNumber().doubleValue() <= 1e-10 * scale, "gradients");
        }
    }

    /** 1F1B and GPipe keep several micro-batches in flight: each slot keeps its block inputs, the workspace is shared. */
    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({"fused, 1f1b", "fused, gpipe", "samediff, 1f1b"})
    void pipelinedRecomputationEqualsKeptActivations(String engine, String schedule) {
        ModelConfig cfg = TestModels.withEngine(
                TestModels.config(23, 16, 16, 4, 2, "pre", "gelu", 0.1, true, true, 0.3, "float64"), engine);
        int[] blocks = {2, 2};
        int[][] windows = TestModels.randomWindows(11, 8, 16, 23);
        long[] samples = TestModels.range(40, 8);
        io.dtrain.parallel.pipeline.PipelineSchedule s = io.dtrain.parallel.pipeline.PipelineSchedule.byName(schedule);
        try (GptModel plain = new GptModel(cfg, blocks, false); GptModel again = new GptModel(cfg, blocks, true)) {
            INDArray params = plain.newFlatBuffer();
            plain.initParams(params, 3);
            plain.setParams(params);
            again.setParams(params);
            INDArray kept = plain.newFlatBuffer();
            INDArray recomputed = again.newFlatBuffer();
            double a = new io.dtrain.train.pp.InProcessPipeline(plain).trainStep(s, 4, windows, samples, 1, 2, kept).loss();
            double b = new io.dtrain.train.pp.InProcessPipeline(again).trainStep(s, 4, windows, samples, 1, 2, recomputed).loss();
            assertEquals(a, b, 1e-12 * Math.abs(a));
            double scale = kept.amaxNumber().doubleValue();
            assertTrue(kept.sub(recomputed).amaxNumber().doubleValue() <= 1e-10 * scale, "gradients");
        }
    }

    private static long activationBytes(GptModel model) {
        long total = 0;
        for (int s = 0; s < model.numStages(); s++) {
            if (model.stage(s) instanceof FusedStage f) {
                total += f.activationBytes();
            }
        }
        return total;
    }
}
