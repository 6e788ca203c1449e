package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.nd4j.linalg.api.ndarray.INDArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
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

    /**
     * A pipeline schedule runs forward m, forward m+1, ... backward m: each slot keeps its own micro-batch, and a
     * backward gives the same result whatever ran in between.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"samediff", "fused"})
    void slotsKeepTheirMicroBatchesApart(String engine) {
        ModelConfig cfg = TestModels.withEngine(
                TestModels.config(23, 8, 16, 2, 2, "pre", "gelu", 0.1, true, true, 0.1, "float64"), engine);
        try (GptModel model = new GptModel(cfg, new int[] {1, 1})) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 77);
            model.setParams(params);
            Stage first = model.stage(0);
            Stage last = model.stage(1);
            int[][] w1 = TestModels.randomWindows(1, 1, 8, 23);
            int[][] w2 = TestModels.randomWindows(2, 1, 8, 23);
            DropoutKeys k1 = new DropoutKeys(1, 1, new long[] {1});
            DropoutKeys k2 = new DropoutKeys(1, 1, new long[] {2});
            INDArray y1 = first.forward(1, w1, null, k1).dup();
            INDArray y2 = first.forward(2, w2, null, k2).dup();
            INDArray lastGrads = model.newFlatBuffer();
            last.loss(w1, y1, k1, 1.0, lastGrads);
            INDArray g1 = last.gradInput().dup();
            last.loss(w2, y2, k2, 1.0, lastGrads);
            INDArray g2 = last.gradInput().dup();
            INDArray grads2 = model.newFlatBuffer();
            first.backward(2, g2, grads2);
            INDArray grads1 = model.newFlatBuffer();
            first.backward(1, g1, grads1);
            // micro-batch 1 alone, from scratch, gives the same gradients
            INDArray alone = model.newFlatBuffer();
            first.forward(1, w1, null, k1);
            first.backward(1, g1, alone);
            assertEquals(0.0, alone.sub(grads1).amaxNumber().doubleValue(), 0.0);
            assertTrue(grads2.sub(grads1).amaxNumber().doubleValue() > 0);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> first.backward(1, g1, alone));
            assertTrue(e.getMessage().contains("no forward pass is held in slot 1"), e.getMessage());
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
