package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GptModelTest {
    @BeforeAll
    static void singleThreaded() {
        TestModels.singleThreaded();
    }

    @AfterAll
    static void restoreThreads() {
        TestModels.restoreThreads();
    }

    @Test
    void layoutViewWritesThroughToTheFlatBuffer() {
        ModelConfig cfg = TestModels.config(11, 8, 8, 2, 2, "pre", "gelu", 0.0, true, true, 0.02, "float64");
        try (GptModel model = new GptModel(cfg, new int[] {1, 1})) {
            INDArray flat = model.newFlatBuffer();
            ParamSpec spec = model.layout().spec("h.1.attn.c_attn.weight");
            INDArray view = model.layout().view(flat, spec.name());
            assertArrayEquals(new long[] {8, 24}, view.shape());
            view.putScalar(2, 5, 3.5);
            assertEquals(3.5, flat.getDouble(spec.offset() + 2 * 24 + 5), 0.0);
            view.addi(1.0);
            assertEquals(4.5, flat.getDouble(spec.offset() + 2 * 24 + 5), 0.0);
            assertEquals(1.0, flat.getDouble(spec.offset()), 0.0);
            assertEquals(0.0, flat.getDouble(spec.offset() - 1), 0.0);
            assertEquals(0.0, flat.getDouble(spec.end()), 0.0);
        }
    }

    @Test
    void layoutNamesOrderAndStageRanges() {
        ModelConfig cfg = TestModels.config(11, 8, 8, 3, 2, "pre", "gelu", 0.0, false, true, 0.02, "float64");
        ParamLayout layout = GptNames.layout(cfg, new int[] {1, 1, 1});
        List<ParamSpec> specs = layout.specs();
        assertEquals("wte", specs.get(0).name());
        assertEquals("wpe", specs.get(1).name());
        assertEquals("h.0.ln_1.weight", specs.get(2).name());
        assertEquals("lm_head.weight", specs.get(specs.size() - 1).name());
        assertEquals("ln_f.bias", specs.get(specs.size() - 2).name());
        assertArrayEquals(new long[] {8, 11}, layout.spec("lm_head.weight").shape());
        assertArrayEquals(new long[] {32, 8}, layout.spec("h.2.mlp.c_proj.weight").shape());
        long end = 0;
        for (int s = 0; s < 3; s++) {
            long[] r = layout.stageRange(s);
            assertEquals(end, r[0], "stage " + s + " starts where the previous ended");
            end = r[1];
        }
        assertEquals(layout.size(), end);
        assertEquals(2, layout.spec("h.2.ln_2.bias").stage());
        // V*D + T*D + 3 blocks + ln_f + head
        long block = 2 * 8 + (8 * 24 + 24) + (8 * 8 + 8) + 2 * 8 + (8 * 32 + 32) + (32 * 8 + 8);
        assertEquals(11 * 8 + 8 * 8 + 3 * block + 2 * 8 + 8 * 11, layout.size());

        ModelConfig noBias = TestModels.config(11, 8, 8, 2, 2, "post", "gelu", 0.0, true, false, 0.02, "float64");
        ParamLayout nb = GptNames.layout(noBias, new int[] {2});
        assertFalse(nb.specs().stream().anyMatch(s -> s.name().endsWith(".bias")));
        assertFalse(nb.contains("ln_f.weight"), "post-norm has no final LayerNorm");
        assertFalse(nb.contains("lm_head.weight"), "tied head has no lm_head");
    }

    @Test
    void initIsDeterministicIndependentOfTheSplitAndHasTheRightStatistics() {
        ModelConfig cfg = TestModels.config(64, 16, 32, 4, 2, "pre", "gelu", 0.0, false, true, 0.02, "float64");
        try (GptModel one = new GptModel(cfg, new int[] {4}); GptModel four = new GptModel(cfg, new int[] {1, 1, 1, 1})) {
            INDArray a = one.newFlatBuffer();
            INDArray b = four.newFlatBuffer();
            one.initParams(a, 42);
            four.initParams(b, 42);
            assertEquals(a, b);
            INDArray c = one.newFlatBuffer();
            one.initParams(c, 43);
            assertFalse(a.equals(c));
            ParamLayout l = one.layout();
            assertEquals(0.02, l.view(a, "wte").stdNumber().doubleValue(), 0.002);
            assertEquals(0.02 / Math.sqrt(8), l.view(a, "h.1.mlp.c_proj.weight").stdNumber().doubleValue(), 0.0005);
            assertEquals(0.02, l.view(a, "h.1.mlp.c_fc.weight").stdNumber().doubleValue(), 0.001);
            assertEquals(0.0, l.view(a, "h.1.mlp.c_fc.weight").meanNumber().doubleValue(), 0.001);
            assertEquals(1.0, l.view(a, "h.0.ln_1.weight").minNumber().doubleValue(), 0.0);
            assertEquals(1.0, l.view(a, "h.0.ln_1.weight").maxNumber().doubleValue(), 0.0);
            assertEquals(0.0, l.view(a, "h.0.attn.c_attn.bias").amaxNumber().doubleValue(), 0.0);
        }
    }

    @Test
    void lossIsTheExactMeanCrossEntropyOfTheLogits() {
        ModelConfig cfg = TestModels.config(17, 8, 16, 2, 2, "pre", "gelu", 0.0, true, true, 0.5, "float64");
        try (GptModel model = new GptModel(cfg)) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 3);
            model.setParams(params);
            int[][] windows = TestModels.randomWindows(9, 3, 8, 17);
            int[][] inputs = new int[3][8];
            for (int b = 0; b < 3; b++) {
                System.arraycopy(windows[b], 0, inputs[b], 0, 8);
            }
            INDArray logits = model.logits(inputs);
            double expected = 0;
            for (int b = 0; b < 3; b++) {
                for (int t = 0; t < 8; t++) {
                    double max = Double.NEGATIVE_INFINITY;
                    for (int v = 0; v < 17; v++) {
                        max = Math.max(max, logits.getDouble(b, t, v));
                    }
                    double sum = 0;
                    for (int v = 0; v < 17; v++) {
                        sum += Math.exp(logits.getDouble(b, t, v) - max);
                    }
                    expected += max + Math.log(sum) - logits.getDouble(b, t, windows[b][t + 1]);
                }
            }
            expected /= 24;
            assertTrue(expected > 1.0, "a large init gives a non-trivial loss: " + expected);
            assertEquals(expected, model.loss(windows), 1e-12 * expected);
            INDArray grads = model.newFlatBuffer();
            assertEquals(expected, model.forwardBackward(windows, TestModels.range(0, 3), 0, 0, grads), 1e-12 * expected);
        }
    }

    @Test
    void gradientsAreAddedNotAssigned() {
        ModelConfig cfg = TestModels.config(11, 8, 8, 2, 2, "pre", "gelu", 0.0, true, true, 0.1, "float64");
        try (GptModel model = new GptModel(cfg, new int[] {1, 1})) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 1);
            model.setParams(params);
            int[][] windows = TestModels.randomWindows(2, 2, 8, 11);
            INDArray once = model.newFlatBuffer();
            model.forwardBackward(windows, TestModels.range(0, 2), 0, 0, once);
            INDArray twice = model.newFlatBuffer();
            model.forwardBackward(windows, TestModels.range(0, 2), 0, 0, twice);
            model.forwardBackward(windows, TestModels.range(0, 2), 0, 0, twice);
            assertTrue(once.amaxNumber().doubleValue() > 0);
            assertEquals(0.0, twice.sub(once.mul(2)).amaxNumber().doubleValue(), 1e-14);
        }
    }

    @Test
    void badInputIsRejectedWithAClearMessage() {
        ModelConfig cfg = TestModels.config(11, 8, 8, 2, 2, "pre", "gelu", 0.0, true, true, 0.1, "float64");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new GptModel(cfg, new int[] {1, 2}));
        assertTrue(e.getMessage().contains("model.n_layer"), e.getMessage());
        ModelConfig badHeads = TestModels.config(11, 8, 9, 2, 2, "pre", "gelu", 0.0, true, true, 0.1, "float64");
        e = assertThrows(IllegalArgumentException.class, () -> new GptModel(badHeads));
        assertTrue(e.getMessage().contains("model.n_head"), e.getMessage());
        try (GptModel model = new GptModel(cfg)) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 1);
            model.setParams(params);
            int[][] windows = TestModels.randomWindows(2, 2, 8, 11);
            windows[1][4] = 11;
            e = assertThrows(IllegalArgumentException.class, () -> model.loss(windows));
            assertTrue(e.getMessage().contains("window 1 position 4"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> model.loss(new int[][] {new int[8]}));
            assertTrue(e.getMessage().contains("seq_len + 1"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> model.forwardBackward(TestModels.randomWindows(2, 2, 8, 11), TestModels.range(0, 2), 0, 0,
                            org.nd4j.linalg.factory.Nd4j.zeros(DataType.FLOAT, model.layout().size())));
            assertTrue(e.getMessage().contains("FLOAT"), e.getMessage());
        }
    }
}
