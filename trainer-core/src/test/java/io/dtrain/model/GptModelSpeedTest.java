package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Prints the training throughput of forwardBackward on a small float32 GPT (d 128, 4 layers, 4 heads, seq 128,
 * batch 16, vocab 257) with ND4J's default threads, for comparison with PyTorch. Asserts nothing about speed.
 * With {@code -Ddtrain.model.speed.all=true} it also measures dropout 0.1 and the fused LayerNorm (eps 0).
 */
class GptModelSpeedTest {

    @Test
    void printTokensPerSecond() {
        measure(0.0, 1e-5);
        if (Boolean.getBoolean("dtrain.model.speed.all")) {
            measure(0.1, 1e-5);
            measure(0.0, 0.0);
        }
    }

    private static void measure(double dropout, double layerNormEps) {
        ModelConfig cfg = TestModels.config(257, 128, 128, 4, 4, "pre", "gelu", dropout, true, true, 0.02,
                layerNormEps, "float32");
        try (GptModel model = new GptModel(cfg)) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 1);
            INDArray grads = model.newFlatBuffer();
            int batch = 16;
            int[][] windows = TestModels.randomWindows(3, batch, 128, 257);
            int warmup = 1;
            int timed = 2;
            double loss = 0;
            long start = 0;
            for (int i = 0; i < warmup + timed; i++) {
                if (i == warmup) {
                    start = System.nanoTime();
                }
                grads.assign(0.0);
                model.setParams(params);
                loss = model.forwardBackward(windows, TestModels.range((long) i * batch, batch), i, 7, grads);
            }
            double seconds = (System.nanoTime() - start) / 1e9;
            System.out.printf("GptModel speed (dropout %.1f, layer_norm_eps %.0e): %.0f tokens/s, %.0f ms per"
                            + " forwardBackward of %d x 128 tokens%n", dropout, layerNormEps, timed * batch * 128 / seconds,
                    1000 * seconds / timed, batch);
            assertTrue(Double.isFinite(loss));
        }
    }
}
