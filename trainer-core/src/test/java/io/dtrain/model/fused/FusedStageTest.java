package io.dtrain.model.fused;

import io.dtrain.compute.Workers;
import io.dtrain.config.ModelConfig;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.GptModel;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.model.PhaseClock;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The fused stage computes what the SameDiff stage graphs compute: loss and every gradient, every model option. */
class FusedStageTest {
    private static Workers workers;

    @BeforeAll
    static void team() {
        workers = new Workers(2);
    }

    @AfterAll
    static void close() {
        workers.close();
    }

    static ModelConfig config(String norm, String activation, double dropout, boolean tied, boolean bias, String dtype) {
        return config(8, norm, activation, dropout, tied, bias, dtype);
    }

    static ModelConfig config(int seqLen, String norm, String activation, double dropout, boolean tied, boolean bias,
                              String dtype) {
        return new ModelConfig(23, seqLen, 16, 2, 4, 0, norm, activation, dropout, tied, bias, 0.2, 1e-5, dtype,
                "samediff");
    }

    static int[][] windows(long seed, int batch, int seqLen, int vocab) {
        SplittableRandom rng = new SplittableRandom(seed);
        int[][] w = new int[batch][seqLen + 1];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t <= seqLen; t++) {
                w[b][t] = rng.nextInt(vocab);
            }
        }
        return w;
    }

    @ParameterizedTest(name = "{0}-norm {1}, dropout {2}, tied {3}, bias {4}, {5}, T {6}")
    @CsvSource({
            "pre,gelu,0.3,true,true,float64,72",
            "post,relu,0.0,false,true,float32,72",
            "pre,gelu,0.0,true,true,float64,",
            "post,relu,0.0,false,true,float64,",
            "pre,relu,0.0,true,false,float64,",
            "post,gelu,0.0,true,false,float64,",
            "pre,gelu,0.3,true,true,float64,",
            "post,gelu,0.3,false,false,float64,",
            "pre,gelu,0.0,true,true,float32,",
            "pre,gelu,0.3,false,true,float32,",
            "post,relu,0.3,true,true,float32,"})
    void wholeModelLossAndGradientsEqualSameDiff(String norm, String activation, double dropout, boolean tied,
                                                 boolean bias, String dtype, Integer seqLen) {
        // T 72 spans several causal row blocks of the attention products, and whole vectors in the softmax
        ModelConfig cfg = config(seqLen == null ? 8 : seqLen, norm, activation, dropout, tied, bias, dtype);
        int batch = 3;
        int[][] w = windows(7, batch, cfg.seqLen(), cfg.vocabSize());
        long[] samples = {11, 12, 13};
        try (GptModel reference = new GptModel(cfg)) {
            INDArray params = reference.newFlatBuffer();
            reference.initParams(params, 42);
            reference.setParams(params);
            INDArray expected = reference.newFlatBuffer();
            double expectedLoss = reference.forwardBackward(w, samples, 5, 99, expected);

            ParamLayout layout = reference.layout();
            FusedStage fused = new FusedStage(cfg, layout, 0, 1, 0, cfg.nLayer(), workers, new PhaseClock());
            fused.setParams(params);
            INDArray actual = reference.newFlatBuffer();
            DropoutKeys keys = dropout > 0 ? new DropoutKeys(99, 5, samples) : null;
            double loss = fused.loss(w, null, keys, 1.0, actual);
            boolean f64 = "float64".equals(dtype);
            assertEquals(expectedLoss, loss, Math.abs(expectedLoss) * (f64 ? 1e-12 : 1e-6), "loss");
            for (ParamSpec s : layout.specs()) {
                INDArray e = layout.view(expected, s.name());
                INDArray a = layout.view(actual, s.name());
                double rel = a.sub(e).norm2Number().doubleValue() / Math.max(1e-30, e.norm2Number().doubleValue());
                assertTrue(rel < (f64 ? 1e-9 : 1e-5), s.name() + ": relative difference " + rel);
            }
            // a second micro-batch adds into the same buffer, and a loss without gradients leaves it alone
            double again = fused.loss(w, null, keys, 1.0, actual);
            assertEquals(loss, again, 0.0);
            INDArray wte = layout.view(actual, GptNames.WTE).dup();
            fused.loss(w, null, keys, 1.0, null);
            assertEquals(0.0, layout.view(actual, GptNames.WTE).sub(wte).norm2Number().doubleValue(), 0.0);
        }
    }
}
