package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.ops.transforms.Transforms;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Windows whose second half repeats the first half of uniformly random tokens: the targets inside the first half
 * are unpredictable (best loss ln V each), the repeated half is predictable (loss 0), so the best mean loss is
 * (unpredictable targets / all targets) * ln V. A model that trains correctly gets close to that floor; one that
 * leaks future tokens gets below it; broken gradients stay above it.
 */
class CopyTaskTest {
    private static final int VOCAB = 11;
    private static final int HALF = 8;
    private static final int SEQ = 2 * HALF - 1; // windows of 2 * HALF tokens = SEQ + 1
    private static final double MARGIN = 0.05;

    @BeforeAll
    static void singleThreaded() {
        TestModels.singleThreaded();
    }

    @AfterAll
    static void restoreThreads() {
        TestModels.restoreThreads();
    }

    @Test
    void copyTaskReachesItsTheoreticalLossFloor() {
        double floor = (HALF - 1) / (double) SEQ * Math.log(VOCAB);
        ModelConfig cfg = TestModels.config(VOCAB, SEQ, 32, 2, 2, "pre", "gelu", 0.0, true, true, 0.02, "float64");
        try (GptModel model = new GptModel(cfg)) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 1);
            INDArray grads = model.newFlatBuffer();
            INDArray m = model.newFlatBuffer();
            INDArray v = model.newFlatBuffer();
            SplittableRandom rng = new SplittableRandom(2024);
            int[][] heldOut = copyWindows(rng, 128);
            double lr = 6e-3;
            double beta1 = 0.9;
            double beta2 = 0.98;
            double evalLoss = Double.NaN;
            long start = System.nanoTime();
            int step;
            for (step = 1; step <= 1500; step++) {
                model.setParams(params);
                if (step % 25 == 0) {
                    evalLoss = model.loss(heldOut);
                    if (evalLoss < floor + MARGIN) {
                        break;
                    }
                }
                grads.assign(0.0);
                model.forwardBackward(copyWindows(rng, 32), TestModels.range(step * 32L, 32), step, 0, grads);
                m.muli(beta1).addi(grads.mul(1 - beta1));
                v.muli(beta2).addi(grads.mul(grads).muli(1 - beta2));
                double correction1 = 1 - Math.pow(beta1, step);
                double correction2 = 1 - Math.pow(beta2, step);
                INDArray denominator = Transforms.sqrt(v.div(correction2), false).addi(1e-8);
                params.subi(m.div(correction1).divi(denominator).muli(lr));
            }
            System.out.printf("copy task: held-out loss %.4f, floor %.4f, after %d steps, %.1f s%n",
                    evalLoss, floor, step, (System.nanoTime() - start) / 1e9);
            assertTrue(evalLoss < floor + MARGIN, "held-out loss " + evalLoss + " did not reach the floor " + floor);
            assertTrue(evalLoss > floor - MARGIN, "held-out loss " + evalLoss + " is below the floor " + floor
                    + ": the model sees future tokens");
        }
    }

    private static int[][] copyWindows(SplittableRandom rng, int batch) {
        int[][] w = new int[batch][2 * HALF];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < HALF; t++) {
                w[b][t] = rng.nextInt(VOCAB);
                w[b][t + HALF] = w[b][t];
            }
        }
        return w;
    }
}
