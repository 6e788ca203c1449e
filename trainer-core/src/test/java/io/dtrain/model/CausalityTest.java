package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/** No position sees the future: changing token t+1 leaves logits at positions <= t bit-identical. */
class CausalityTest {
    private static final int VOCAB = 17;
    private static final int SEQ = 12;

    @BeforeAll
    static void singleThreaded() {
        TestModels.singleThreaded();
    }

    @AfterAll
    static void restoreThreads() {
        TestModels.restoreThreads();
    }

    @ParameterizedTest(name = "{0}-norm stages={1}")
    @CsvSource({"pre, 2", "post, 1-1"})
    void changingAFutureTokenLeavesEarlierLogitsBitIdentical(String norm, String stages) {
        int[] blocks = stages.equals("2") ? new int[] {2} : new int[] {1, 1};
        ModelConfig cfg = TestModels.config(VOCAB, SEQ, 16, 2, 2, norm, "gelu", 0.1, true, true, 0.2, "float64");
        try (GptModel model = new GptModel(cfg, blocks)) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 5);
            model.setParams(params);
            int[][] inputs = new int[2][];
            int[][] windows = TestModels.randomWindows(8, 2, SEQ - 1, VOCAB);
            inputs[0] = windows[0];
            inputs[1] = windows[1];
            INDArray base = model.logits(inputs);
            assertArrayEquals(new long[] {2, SEQ, VOCAB}, base.shape());
            for (int t : new int[] {0, 4, SEQ - 2}) {
                int[][] changed = {inputs[0].clone(), inputs[1].clone()};
                changed[1][t + 1] = (changed[1][t + 1] + 1) % VOCAB;
                INDArray other = model.logits(changed);
                for (int p = 0; p <= t; p++) {
                    assertArrayEquals(row(base, 1, p), row(other, 1, p), "position " + p + " saw token " + (t + 1));
                }
                assertFalse(java.util.Arrays.equals(row(base, 1, t + 1), row(other, 1, t + 1)),
                        "position " + (t + 1) + " must see its own token");
                assertArrayEquals(row(base, 0, SEQ - 1), row(other, 0, SEQ - 1), "rows of a batch are independent");
            }
            // a shorter prompt gives the same logits as the full input's prefix
            int[][] prefix = {java.util.Arrays.copyOf(inputs[0], 5), java.util.Arrays.copyOf(inputs[1], 5)};
            INDArray shortLogits = model.logits(prefix);
            assertArrayEquals(new long[] {2, 5, VOCAB}, shortLogits.shape());
            assertEquals(base.get(NDArrayIndex.all(), NDArrayIndex.interval(0, 5), NDArrayIndex.all()), shortLogits);
        }
    }

    private static double[] row(INDArray logits, int b, int t) {
        return logits.get(NDArrayIndex.point(b), NDArrayIndex.point(t), NDArrayIndex.all()).toDoubleVector();
    }
}
