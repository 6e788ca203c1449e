package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.DoubleSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fourth-order central finite differences (float64) against the analytic gradients of forwardBackward, one or
 * more elements of every parameter tensor, with dropout on in most cases (keyed masks make the loss a fixed
 * function of the parameters).
 */
class GradientCheckTest {
    @BeforeAll
    static void singleThreaded() {
        TestModels.singleThreaded();
    }

    @AfterAll
    static void restoreThreads() {
        TestModels.restoreThreads();
    }
    private static final double H = 1e-4;
    private static final double MAX_RELATIVE_ERROR = 1e-6;
    private static final int VOCAB = 13;
    private static final int SEQ = 8;
    private static final int BATCH = 3;
    /** Tokens are drawn below this, so wte rows >= it never occur in the inputs. */
    private static final int MAX_TOKEN = VOCAB - 2;

    @ParameterizedTest(name = "{0}-norm tied={1} {2} bias={3} dropout={4} stages={5} eps={6} {7}")
    @CsvSource({
            "pre,  true,  gelu, true,  0.0, 2,     1e-5, samediff",
            "post, false, relu, true,  0.1, 1-1,   1e-5, samediff",
            "pre,  false, gelu, false, 0.1, 1-1-1, 1e-5, samediff",
            "post, true,  gelu, true,  0.1, 1-2,   1e-5, fused",
            "pre,  true,  gelu, true,  0.0, 1-1,   1e-3, fused",
            "pre,  false, gelu, false, 0.1, 2,     1e-5, fused"})
    void parameterGradientsMatchFiniteDifferences(String norm, boolean tied, String activation, boolean bias,
                                                  double dropout, String stages, double layerNormEps, String engine) {
        int[] blocks = parseBlocks(stages);
        ModelConfig cfg = TestModels.withEngine(TestModels.config(VOCAB, SEQ, 8, sum(blocks), 2, norm, activation,
                dropout, tied, bias, 0.3, layerNormEps, "float64"), engine);
        try (GptModel model = new GptModel(cfg, blocks)) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 11);
            perturbNormsAndBiases(model, params);
            model.setParams(params);
            int[][] windows = TestModels.randomWindows(5, BATCH, SEQ, MAX_TOKEN);
            long[] samples = {7, 100, 3};
            INDArray analytic = model.newFlatBuffer();
            double loss = model.forwardBackward(windows, samples, 4, 99, analytic);
            DropoutKeys keys = new DropoutKeys(99, 4, samples);
            assertEquals(loss, model.loss(windows, keys), 1e-13 * loss);

            SplittableRandom rng = new SplittableRandom(17);
            List<Long> checked = new ArrayList<>();
            for (ParamSpec spec : model.layout().specs()) {
                if (spec.name().equals(GptNames.WTE)) {
                    checked.add(spec.offset() + (long) windows[1][2] * 8 + 3); // a row that occurs
                    checked.add(spec.offset() + (long) windows[0][5] * 8 + 6);
                    checked.add(spec.offset() + (long) (VOCAB - 1) * 8 + 1); // a row that never occurs
                } else if (spec.name().equals(GptNames.WPE)) {
                    checked.add(spec.offset() + 0 * 8 + 2);
                    checked.add(spec.offset() + 7 * 8 + 5);
                } else {
                    checked.add(spec.offset() + rng.nextLong(spec.size()));
                }
            }
            double worst = 0;
            String worstAt = "";
            for (long i : checked) {
                double numeric = derivative(params, i, () -> {
                    model.setParams(params);
                    return model.loss(windows, keys);
                });
                double a = analytic.getDouble(i);
                String where = nameAt(model.layout(), i);
                if (where.startsWith("wte[" + (VOCAB - 1)) && !tied) {
                    assertEquals(0.0, a, 0.0, "an embedding row that never occurs gets no gradient");
                }
                double err = relativeError(a, numeric);
                if (err > worst) {
                    worst = err;
                    worstAt = where + " analytic " + a + " numeric " + numeric;
                }
            }
            assertTrue(worst < MAX_RELATIVE_ERROR, "worst relative error " + worst + " at " + worstAt);
        }
    }

    @ParameterizedTest(name = "{0}-norm dropout={1} {2}")
    @CsvSource({"pre, 0.1, samediff", "post, 0.0, samediff", "pre, 0.1, fused", "post, 0.0, fused"})
    void middleStageInputGradientMatchesFiniteDifferences(String norm, double dropout, String engine) {
        ModelConfig cfg = TestModels.withEngine(
                TestModels.config(VOCAB, SEQ, 8, 3, 2, norm, "gelu", dropout, true, true, 0.3, "float64"), engine);
        try (GptModel model = new GptModel(cfg, new int[] {1, 1, 1})) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 11);
            perturbNormsAndBiases(model, params);
            model.setParams(params);
            Stage middle = model.stage(1);
            Nd4j.getRandom().setSeed(5);
            INDArray x = Nd4j.randn(DataType.DOUBLE, 2, SEQ, 8);
            INDArray gOut = Nd4j.randn(DataType.DOUBLE, 2, SEQ, 8);
            DropoutKeys keys = new DropoutKeys(3, 1, new long[] {4, 9});
            INDArray grads = model.newFlatBuffer();
            middle.forward(0, null, x, keys);
            INDArray gradInput = middle.backward(0, gOut, grads).dup();
            SplittableRandom rng = new SplittableRandom(3);
            double worst = 0;
            for (int n = 0; n < 12; n++) {
                int b = rng.nextInt(2);
                int t = rng.nextInt(SEQ);
                int d = rng.nextInt(8);
                double numeric = derivative(x, ((long) b * SEQ + t) * 8 + d,
                        () -> middle.forward(-1, null, x, keys).mul(gOut).sumNumber().doubleValue());
                worst = Math.max(worst, relativeError(gradInput.getDouble(b, t, d), numeric));
            }
            assertTrue(worst < MAX_RELATIVE_ERROR, "worst relative error of dL/dx_in " + worst);
            // and one parameter of the middle stage through the same vector-Jacobian product
            String name = "h.1.mlp.c_fc.weight";
            long element = model.layout().spec(name).offset() + 3 * 32 + 7;
            double numeric = derivative(params, element, () -> {
                middle.setParams(params);
                return middle.forward(-1, null, x, keys).mul(gOut).sumNumber().doubleValue();
            });
            double err = relativeError(grads.getDouble(element), numeric);
            assertTrue(err < MAX_RELATIVE_ERROR, name + " relative error " + err);
        }
    }

    /** Gains of 1 and biases of 0 would hide mistakes (a swapped gain/bias, a bias that is never added). */
    private static void perturbNormsAndBiases(GptModel model, INDArray params) {
        SplittableRandom rng = new SplittableRandom(23);
        for (ParamSpec s : model.layout().specs()) {
            if (s.kind() == ParamKind.NORM || s.kind() == ParamKind.BIAS) {
                INDArray v = ParamLayout.view(params, s);
                for (long i = 0; i < s.size(); i++) {
                    v.putScalar(i, v.getDouble(i) + 0.2 * (rng.nextDouble() - 0.5));
                }
            }
        }
    }

    /** d f / d array[i] by the fourth-order central difference; restores array[i]. */
    private static double derivative(INDArray array, long i, DoubleSupplier f) {
        double original = array.getDouble(i);
        double[] values = new double[4];
        double[] offsets = {-2 * H, -H, H, 2 * H};
        for (int k = 0; k < 4; k++) {
            array.putScalar(i, original + offsets[k]);
            values[k] = f.getAsDouble();
        }
        array.putScalar(i, original);
        return (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * H);
    }

    /**
     * Relative error; gradients below 1e-5 are measured against 1e-5, since the finite difference's round-off
     * (~1e-11 here) would otherwise dominate near-zero gradients.
     */
    private static double relativeError(double a, double b) {
        return Math.abs(a - b) / Math.max(1e-5, Math.max(Math.abs(a), Math.abs(b)));
    }

    private static String nameAt(ParamLayout layout, long i) {
        for (ParamSpec s : layout.specs()) {
            if (i >= s.offset() && i < s.end()) {
                long local = i - s.offset();
                long cols = s.shape().length == 2 ? s.shape()[1] : s.size();
                return s.name() + "[" + (local / cols) + "," + (local % cols) + "]";
            }
        }
        throw new IllegalArgumentException("offset " + i);
    }

    private static int[] parseBlocks(String s) {
        String[] parts = s.split("-");
        int[] out = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            out[i] = Integer.parseInt(parts[i].trim());
        }
        return out;
    }

    private static int sum(int[] a) {
        int s = 0;
        for (int x : a) {
            s += x;
        }
        return s;
    }
}
