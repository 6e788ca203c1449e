package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.nd4j.linalg.api.ndarray.INDArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** 1, 2 and 4 stage graphs give the same loss and gradients, dropout included (keyed masks). */
class StageEquivalenceTest {

    @BeforeAll
    static void singleThreaded() {
        TestModels.singleThreaded();
    }

    @AfterAll
    static void restoreThreads() {
        TestModels.restoreThreads();
    }

    /** A pipeline schedule runs forward m, forward m+1, ... backward m: earlier results must stay intact. */
    @Test
    void stageResultsSurviveLaterCallsOfTheSameStage() {
        ModelConfig cfg = TestModels.config(23, 8, 16, 2, 2, "pre", "gelu", 0.1, true, true, 0.1, "float64");
        try (GptModel model = new GptModel(cfg, new int[] {1, 1})) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 77);
            model.setParams(params);
            StageGraph first = model.stage(0);
            StageGraph last = model.stage(1);
            INDArray x1 = model.embedding().forward(new int[][] {TestModels.randomWindows(1, 1, 7, 23)[0]});
            INDArray x2 = model.embedding().forward(new int[][] {TestModels.randomWindows(2, 1, 7, 23)[0]});
            DropoutKeys k1 = new DropoutKeys(1, 1, new long[] {1});
            DropoutKeys k2 = new DropoutKeys(1, 1, new long[] {2});
            INDArray y1 = first.forward(x1, k1);
            INDArray y1Copy = y1.dup();
            int[][] targets = {{1, 2, 3, 4, 5, 6, 7, 8}};
            LastStageResult r1 = last.lossAndBackward(y1, targets, k1);
            INDArray g1Copy = r1.gradInput().dup();
            INDArray y2 = first.forward(x2, k2);
            LastStageResult r2 = last.lossAndBackward(y2, targets, k2);
            StageBackward b2 = first.backward(x2, r2.gradInput(), k2);
            StageBackward b1 = first.backward(x1, r1.gradInput(), k1);
            assertEquals(y1Copy, y1);
            assertEquals(g1Copy, r1.gradInput());
            // recomputing micro-batch 1 alone gives the same input gradient
            StageBackward again = first.backward(x1, g1Copy, k1);
            assertEquals(again.gradInput(), b1.gradInput());
            assertTrue(b2.gradInput().sub(b1.gradInput()).amaxNumber().doubleValue() > 0);
        }
    }

    @ParameterizedTest(name = "{0}-norm tied={1} dropout={2}")
    @CsvSource({"pre, true, 0.1", "post, false, 0.2"})
    void splitsGiveIdenticalLossAndGradients(String norm, boolean tied, double dropout) {
        ModelConfig cfg = TestModels.config(23, 8, 16, 4, 2, norm, "gelu", dropout, tied, true, 0.1, "float64");
        int[][] windows = TestModels.randomWindows(4, 3, 8, 23);
        long[] samples = {12, 5, 40};
        int[][] splits = {{4}, {2, 2}, {1, 1, 1, 1}};
        double[] losses = new double[splits.length];
        INDArray[] grads = new INDArray[splits.length];
        for (int k = 0; k < splits.length; k++) {
            try (GptModel model = new GptModel(cfg, splits[k])) {
                INDArray params = model.newFlatBuffer();
                model.initParams(params, 77);
                model.setParams(params);
                grads[k] = model.newFlatBuffer();
                losses[k] = model.forwardBackward(windows, samples, 3, 1234, grads[k]);
                assertEquals(0, model.layout().stageRange(0)[0]);
            }
        }
        double scale = grads[0].amaxNumber().doubleValue();
        assertTrue(scale > 0);
        for (int k = 1; k < splits.length; k++) {
            assertEquals(losses[0], losses[k], 1e-12 * losses[0], "loss of split " + k);
            double diff = grads[k].sub(grads[0]).amaxNumber().doubleValue();
            assertTrue(diff <= 1e-12 * scale, "split " + k + ": max gradient difference " + diff + " vs max " + scale);
        }
        // and dropout really is on: another step gives other masks and another loss
        if (dropout > 0) {
            try (GptModel model = new GptModel(cfg, splits[1])) {
                INDArray params = model.newFlatBuffer();
                model.initParams(params, 77);
                model.setParams(params);
                double other = model.forwardBackward(windows, samples, 4, 1234, model.newFlatBuffer());
                assertTrue(Math.abs(other - losses[0]) > 1e-6, "step 4 loss " + other + " equals step 3 loss");
            }
        }
    }
}
