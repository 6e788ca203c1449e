package io.dtrain.optim;

import io.dtrain.config.OptimizerConfig;
import io.dtrain.model.ParamKind;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AdamWTest {

    /** One parameter of each kind; sizes chosen so tensors do not align with any range boundary used below. */
    static ParamLayout layout() {
        return ParamLayout.builder()
                .add("wte.weight", ParamKind.EMBEDDING, 0, 3, 2)
                .add("h.0.ln_1.weight", ParamKind.NORM, 0, 2)
                .add("h.0.attn.c_attn.weight", ParamKind.MATRIX, 0, 2, 3)
                .add("h.0.attn.c_attn.bias", ParamKind.BIAS, 0, 3)
                .add("h.0.mlp.c_fc.weight", ParamKind.MATRIX, 1, 2, 2)
                .build();
    }

    static OptimizerConfig cfg(double wd, boolean biasesAndNorms, boolean embeddings) {
        return new OptimizerConfig(1e-2, 1e-3, 0.9, 0.95, 1e-8, wd, biasesAndNorms, embeddings, 1.0, "none", false);
    }

    static double initialParam(int i) {
        return 0.5 - 0.07 * i + 0.013 * i * i % 0.3;
    }

    static double grad(int step, int i) {
        return Math.sin(1.7 * i + 0.9 * step) * (1 + 0.25 * step) - 0.1;
    }

    static final double[] LRS = {1e-2, 7e-3, 3e-3};
    static final double[] SCALES = {1.0, 0.5, 0.8};

    /** PyTorch's AdamW written out for one element in plain double math, as in the torch.optim docs. */
    static double[] referenceAdamW(ParamLayout layout, OptimizerConfig c, int steps) {
        int n = (int) layout.size();
        double[] p = new double[n];
        double[] m = new double[n];
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            p[i] = initialParam(i);
        }
        for (ParamSpec s : layout.specs()) {
            boolean decayed = switch (s.kind()) {
                case MATRIX -> true;
                case BIAS, NORM -> c.decayBiasesAndNorms();
                case EMBEDDING -> c.decayEmbeddings();
            };
            for (int i = (int) s.offset(); i < s.end(); i++) {
                for (int t = 1; t <= steps; t++) {
                    double lr = LRS[t - 1];
                    double g = grad(t, i) * SCALES[t - 1];
                    if (decayed) {
                        p[i] = p[i] - lr * c.weightDecay() * p[i];
                    }
                    m[i] = c.beta1() * m[i] + (1 - c.beta1()) * g;
                    v[i] = c.beta2() * v[i] + (1 - c.beta2()) * g * g;
                    double mHat = m[i] / (1 - Math.pow(c.beta1(), t));
                    double vHat = v[i] / (1 - Math.pow(c.beta2(), t));
                    p[i] = p[i] - lr * mHat / (Math.sqrt(vHat) + c.eps());
                }
            }
        }
        return p;
    }

    static INDArray initialParams(ParamLayout layout, DataType dtype) {
        double[] p = new double[(int) layout.size()];
        for (int i = 0; i < p.length; i++) {
            p[i] = initialParam(i);
        }
        return Nd4j.createFromArray(p).castTo(dtype);
    }

    static INDArray grads(ParamLayout layout, int step, DataType dtype) {
        double[] g = new double[(int) layout.size()];
        for (int i = 0; i < g.length; i++) {
            g[i] = grad(step, i);
        }
        return Nd4j.createFromArray(g).castTo(dtype);
    }

    @Test
    void threeStepsMatchHandComputedAdamWForEveryDecayGroup() {
        ParamLayout layout = layout();
        OptimizerConfig[] configs = {cfg(0.1, false, false), cfg(0.1, true, false), cfg(0.1, false, true),
                cfg(0.3, true, true), cfg(0.0, true, true)};
        for (OptimizerConfig c : configs) {
            AdamW opt = new AdamW(layout, c, DataType.DOUBLE);
            INDArray p = initialParams(layout, DataType.DOUBLE);
            for (int t = 1; t <= 3; t++) {
                opt.step(p, grads(layout, t, DataType.DOUBLE), LRS[t - 1], SCALES[t - 1]);
            }
            assertEquals(3, opt.stepCount());
            double[] expected = referenceAdamW(layout, c, 3);
            double[] actual = p.toDoubleVector();
            for (int i = 0; i < expected.length; i++) {
                assertEquals(expected[i], actual[i], 1e-12, "element " + i + " with " + c);
            }
        }
    }

    @Test
    void decayMaskFollowsParamKind() {
        ParamLayout layout = layout();
        // Decay actually moves parameters: with and without decay differ exactly on the decayed elements.
        AdamW none = new AdamW(layout, cfg(0.0, false, false), DataType.DOUBLE);
        AdamW some = new AdamW(layout, cfg(0.5, false, false), DataType.DOUBLE);
        INDArray p0 = initialParams(layout, DataType.DOUBLE);
        INDArray p1 = initialParams(layout, DataType.DOUBLE);
        none.step(p0, grads(layout, 1, DataType.DOUBLE), 0.1, 1.0);
        some.step(p1, grads(layout, 1, DataType.DOUBLE), 0.1, 1.0);
        for (ParamSpec s : layout.specs()) {
            boolean differs = !layout.view(p0, s.name()).equals(layout.view(p1, s.name()));
            assertEquals(s.kind() == ParamKind.MATRIX, differs, s.name());
            assertEquals(s.kind() == ParamKind.MATRIX, some.isDecayed(s.offset()), s.name());
        }
        AdamW all = new AdamW(layout, cfg(0.5, true, true), DataType.DOUBLE);
        for (ParamSpec s : layout.specs()) {
            assertTrue(all.isDecayed(s.end() - 1), s.name());
        }
    }

    @Test
    void firstStepHasTheClosedForm() {
        // t=1: m_hat = g, v_hat = g^2, so p = p*(1 - lr*wd) - lr * g / (|g| + eps).
        ParamLayout layout = ParamLayout.builder().add("w", ParamKind.MATRIX, 0, 1).add("b", ParamKind.BIAS, 0, 1).build();
        AdamW opt = new AdamW(layout, cfg(0.1, false, false), DataType.DOUBLE);
        INDArray p = Nd4j.createFromArray(1.0, 1.0);
        opt.step(p, Nd4j.createFromArray(0.5, -2.0), 0.1, 1.0);
        assertEquals(0.99 - 0.1 * 0.5 / (0.5 + 1e-8), p.getDouble(0), 1e-15);
        assertEquals(1.0 + 0.1 * 2.0 / (2.0 + 1e-8), p.getDouble(1), 1e-15);
        assertEquals(0.89000000199999996, p.getDouble(0), 1e-15);
        assertEquals(0.05, opt.m().getDouble(0), 1e-15);
        assertEquals(0.05 * 0.25, opt.v().getDouble(0), 1e-15);
    }

    @Test
    void float32MatchesTheDoubleReference() {
        ParamLayout layout = layout();
        OptimizerConfig c = cfg(0.1, true, false);
        AdamW opt = new AdamW(layout, c, DataType.FLOAT);
        INDArray p = initialParams(layout, DataType.FLOAT);
        for (int t = 1; t <= 3; t++) {
            opt.step(p, grads(layout, t, DataType.FLOAT), LRS[t - 1], SCALES[t - 1]);
        }
        assertEquals(DataType.FLOAT, p.dataType());
        double[] expected = referenceAdamW(layout, c, 3);
        double[] actual = p.toDoubleVector();
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], actual[i], 1e-6, "element " + i);
        }
    }

    @Test
    void rangeUpdatesEqualTheFullUpdateRestrictedToTheRange() {
        ParamLayout layout = layout();
        OptimizerConfig c = cfg(0.2, false, true);
        for (DataType dt : new DataType[] {DataType.DOUBLE, DataType.FLOAT}) {
            AdamW full = new AdamW(layout, c, dt);
            AdamW pieces = new AdamW(layout, c, dt);
            AdamW partial = new AdamW(layout, c, dt);
            AdamW shard = new AdamW(layout, c, dt, 5, 14);   // ZeRO-1 style: state only for [5, 14)
            INDArray pFull = initialParams(layout, dt);
            INDArray pPieces = initialParams(layout, dt);
            INDArray pPartial = initialParams(layout, dt);
            INDArray pShard = initialParams(layout, dt);
            for (int t = 1; t <= 3; t++) {
                INDArray g = grads(layout, t, dt);
                full.step(pFull, g, LRS[t - 1], SCALES[t - 1]);
                long[] cuts = {0, 4, 7, 13, layout.size()};
                for (int k = 0; k + 1 < cuts.length; k++) {
                    pieces.update(pPieces, g, cuts[k], cuts[k + 1], t, LRS[t - 1], SCALES[t - 1]);
                }
                partial.update(pPartial, g, 5, 14, t, LRS[t - 1], SCALES[t - 1]);
                shard.step(pShard, g, LRS[t - 1], SCALES[t - 1]);
            }
            assertArrayEquals(pFull.toDoubleVector(), pPieces.toDoubleVector(), 0.0, dt.toString());
            assertArrayEquals(full.m().toDoubleVector(), pieces.m().toDoubleVector(), 0.0);
            assertArrayEquals(full.v().toDoubleVector(), pieces.v().toDoubleVector(), 0.0);
            double[] init = initialParams(layout, dt).toDoubleVector();
            double[] f = pFull.toDoubleVector();
            double[] part = pPartial.toDoubleVector();
            double[] sh = pShard.toDoubleVector();
            for (int i = 0; i < f.length; i++) {
                boolean inside = i >= 5 && i < 14;
                assertEquals(inside ? f[i] : init[i], part[i], 0.0, "partial element " + i);
                assertEquals(inside ? f[i] : init[i], sh[i], 0.0, "shard element " + i);
            }
            assertEquals(9, shard.m().length());
            assertArrayEquals(full.m().get(NDArrayIndex.interval(5, 14)).toDoubleVector(), shard.m().toDoubleVector(), 0.0);
            assertArrayEquals(full.v().get(NDArrayIndex.interval(5, 14)).toDoubleVector(), shard.v().toDoubleVector(), 0.0);
        }
    }

    @Test
    void viewsIntoALargerBufferUpdateLikeStandaloneArraysAndLeaveTheRestUntouched() {
        ParamLayout layout = layout();
        int n = (int) layout.size();
        OptimizerConfig c = cfg(0.1, false, false);
        INDArray big = Nd4j.zeros(DataType.DOUBLE, 2 * n + 3);
        INDArray pView = big.get(NDArrayIndex.interval(3, 3 + n));
        pView.assign(initialParams(layout, DataType.DOUBLE));
        INDArray gBig = Nd4j.zeros(DataType.DOUBLE, n + 7);
        INDArray gView = gBig.get(NDArrayIndex.interval(7, 7 + n));
        AdamW a = new AdamW(layout, c, DataType.DOUBLE);
        AdamW b = new AdamW(layout, c, DataType.DOUBLE);
        INDArray p = initialParams(layout, DataType.DOUBLE);
        for (int t = 1; t <= 2; t++) {
            gView.assign(grads(layout, t, DataType.DOUBLE));
            a.step(pView, gView, 0.01, 1.0);
            b.step(p, grads(layout, t, DataType.DOUBLE), 0.01, 1.0);
        }
        assertArrayEquals(p.toDoubleVector(), pView.toDoubleVector(), 0.0);
        assertEquals(0.0, big.getDouble(0));
        assertEquals(0.0, big.getDouble(3 + n));
        assertFalse(pView.equals(initialParams(layout, DataType.DOUBLE)));
    }

    @Test
    void aWrongDtypeSizeRangeOrBetaIsRefusedNamingIt() {
        ParamLayout layout = layout();
        AdamW opt = new AdamW(layout, cfg(0.1, false, false), DataType.FLOAT);
        INDArray p = initialParams(layout, DataType.FLOAT);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> opt.step(p, grads(layout, 1, DataType.DOUBLE), 0.1, 1.0));
        assertTrue(e.getMessage().contains("grads is DOUBLE but the AdamW state is FLOAT"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> opt.step(p, Nd4j.zeros(DataType.FLOAT, 3), 0.1, 1.0));
        assertTrue(e.getMessage().contains("grads has 3 elements, the layout has 21"), e.getMessage());
        AdamW shard = new AdamW(layout, cfg(0.1, false, false), DataType.FLOAT, 2, 6);
        e = assertThrows(IllegalArgumentException.class,
                () -> shard.update(p, p, 0, 6, 1, 0.1, 1.0));
        assertTrue(e.getMessage().contains("outside this optimizer's state range [2, 6)"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new AdamW(layout,
                new OptimizerConfig(1e-3, 0, 1.0, 0.95, 1e-8, 0.1, false, false, 1, "none", false), DataType.FLOAT));
        assertTrue(e.getMessage().contains("optimizer.beta1"), e.getMessage());
    }
}
