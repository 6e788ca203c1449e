package io.dtrain.train;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptModel;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.nd4j.linalg.api.ndarray.INDArray;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Decoding with the fused engine's key/value cache gives the tokens that recomputing the context gives. */
class GeneratorTest {
    @ParameterizedTest(name = "{0}-norm {1} tied={2} {3}")
    @CsvSource({"pre, gelu, true, float32", "pre, gelu, false, float64", "post, relu, true, float32"})
    void cachedGreedyDecodingEqualsRecomputingTheContext(String norm, String activation, boolean tied, String dtype) {
        // seq_len 16 and 40 new tokens: the context slides past seq_len, where the cache restarts from the window
        ModelConfig cfg = new ModelConfig(31, 16, 32, 2, 4, 0, norm, activation, 0.0, tied, true, 0.5, 1e-5, dtype, "fused");
        try (GptModel model = new GptModel(cfg)) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 3);
            model.setParams(params);
            assertNotNull(model.newDecoder(), "the fused engine decodes with a cache");
            for (int[] prompt : new int[][] {{1}, {4, 9, 2, 30, 7}, {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4}}) {
                int[] cached = new Generator(model).generate(prompt, 40, 0.0, 0, 1, null);
                int[] recomputed = new Generator(model, false).generate(prompt, 40, 0.0, 0, 1, null);
                assertArrayEquals(recomputed, cached, "prompt of " + prompt.length + " tokens");
                assertTrue(java.util.Arrays.stream(cached).distinct().count() > 3, "a varied continuation");
            }
        }
    }
}
