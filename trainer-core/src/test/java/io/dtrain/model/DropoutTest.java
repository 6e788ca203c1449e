package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class DropoutTest {

    @BeforeAll
    static void singleThreaded() {
        TestModels.singleThreaded();
    }

    @AfterAll
    static void restoreThreads() {
        TestModels.restoreThreads();
    }

    @Test
    void aSampleGetsTheSameMaskWhereverItSitsInTheBatch() {
        long perSample = 4 * 16 * 16;
        DropoutKeys alone = new DropoutKeys(9, 3, new long[] {42});
        DropoutKeys fourth = new DropoutKeys(9, 3, new long[] {7, 8, 9, 42});
        INDArray a = DropoutMasks.mask(alone, 0.25, 1, DropoutMasks.SITE_ATTENTION_PROBS, perSample, DataType.DOUBLE, 1, 4, 16, 16);
        INDArray b = DropoutMasks.mask(fourth, 0.25, 1, DropoutMasks.SITE_ATTENTION_PROBS, perSample, DataType.DOUBLE, 4, 4, 16, 16);
        assertEquals(a.get(NDArrayIndex.point(0)), b.get(NDArrayIndex.point(3)));
        assertNotEquals(b.get(NDArrayIndex.point(2)), b.get(NDArrayIndex.point(3)), "other samples get other masks");
        INDArray otherLayer = DropoutMasks.mask(alone, 0.25, 0, DropoutMasks.SITE_ATTENTION_PROBS, perSample, DataType.DOUBLE, 1, 4, 16, 16);
        INDArray otherStep = DropoutMasks.mask(new DropoutKeys(9, 4, new long[] {42}), 0.25, 1,
                DropoutMasks.SITE_ATTENTION_PROBS, perSample, DataType.DOUBLE, 1, 4, 16, 16);
        assertNotEquals(a, otherLayer);
        assertNotEquals(a, otherStep);
        // inverted dropout: values are 0 or 1/(1-p), about p of them dropped, mean about 1
        double kept = b.neq(0.0).castTo(DataType.DOUBLE).meanNumber().doubleValue();
        assertEquals(0.75, kept, 0.03);
        assertEquals(1.0, b.meanNumber().doubleValue(), 0.04);
        assertEquals(1.0 / 0.75, b.maxNumber().doubleValue(), 1e-15);
        assertEquals(0.0, b.minNumber().doubleValue(), 0.0);
    }

    @Test
    void batchLossIsTheMeanOfPerSampleLossesWithDropout() {
        ModelConfig cfg = TestModels.config(19, 8, 16, 2, 2, "pre", "gelu", 0.3, true, true, 0.2, "float64");
        try (GptModel model = new GptModel(cfg, new int[] {1, 1})) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 2);
            model.setParams(params);
            int[][] windows = TestModels.randomWindows(6, 4, 8, 19);
            long[] samples = {7, 8, 9, 42};
            INDArray batchGrads = model.newFlatBuffer();
            double batchLoss = model.forwardBackward(windows, samples, 3, 9, batchGrads);
            double sum = 0;
            INDArray singleGrads = model.newFlatBuffer();
            for (int b = 0; b < 4; b++) {
                sum += model.forwardBackward(new int[][] {windows[b]}, new long[] {samples[b]}, 3, 9, singleGrads);
            }
            assertEquals(batchLoss, sum / 4, 1e-13 * batchLoss);
            // gradients of a mean over 4 equal the mean of 4 single-sample gradients
            double diff = singleGrads.div(4).sub(batchGrads).amaxNumber().doubleValue();
            assertTrue(diff < 1e-13 * batchGrads.amaxNumber().doubleValue(), "gradient difference " + diff);
            double noDropout = model.loss(windows);
            assertTrue(Math.abs(noDropout - batchLoss) > 1e-4, "dropout changes the training loss");
            assertEquals(noDropout, model.loss(windows, null), 0.0);
        }
    }

    @Test
    void float32PathRuns() {
        ModelConfig cfg = TestModels.config(31, 16, 32, 2, 2, "pre", "gelu", 0.1, false, true, 0.02, "float32");
        try (GptModel model = new GptModel(cfg, new int[] {1, 1})) {
            assertEquals(DataType.FLOAT, model.dataType());
            INDArray params = model.newFlatBuffer();
            assertEquals(DataType.FLOAT, params.dataType());
            model.initParams(params, 1);
            model.setParams(params);
            int[][] windows = TestModels.randomWindows(3, 4, 16, 31);
            INDArray grads = model.newFlatBuffer();
            double loss = model.forwardBackward(windows, TestModels.range(0, 4), 0, 5, grads);
            assertEquals(Math.log(31), loss, 0.1, "a small init predicts nearly uniformly");
            assertFalse(Double.isNaN(grads.sumNumber().doubleValue()));
            assertTrue(grads.amaxNumber().doubleValue() > 0);
            assertEquals(Math.log(31), model.loss(windows), 0.1);
            assertEquals(DataType.FLOAT, model.logits(new int[][] {{1, 2, 3}}).dataType());
        }
    }
}
