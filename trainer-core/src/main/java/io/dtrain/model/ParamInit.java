package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.nio.charset.StandardCharsets;
import java.util.SplittableRandom;

/**
 * GPT-2 / nanoGPT initialisation, deterministic from a seed and independent of ND4J's RNG and of the stage
 * split: each parameter draws from its own SplittableRandom keyed by (seed, name).
 * Weights and embeddings N(0, init_std); the residual projections (attn.c_proj, mlp.c_proj) N(0,
 * init_std/sqrt(2 n_layer)); biases 0; LayerNorm weight 1, bias 0.
 */
public final class ParamInit {
    private ParamInit() {
    }

    public static void init(ModelConfig cfg, ParamLayout layout, INDArray flatParams, long seed) {
        double residualStd = cfg.initStd() / Math.sqrt(2.0 * cfg.nLayer());
        for (ParamSpec s : layout.specs()) {
            INDArray view = ParamLayout.view(flatParams, s);
            switch (s.kind()) {
                case BIAS -> view.assign(0.0);
                case NORM -> view.assign(s.name().endsWith(".weight") ? 1.0 : 0.0);
                case MATRIX, EMBEDDING -> {
                    double std = s.name().endsWith(".c_proj.weight") ? residualStd : cfg.initStd();
                    double[] values = normals(streamSeed(seed, s.name()), (int) s.size(), std);
                    view.assign(Nd4j.create(values, s.shape(), DataType.DOUBLE).castTo(view.dataType()));
                }
                default -> throw new IllegalStateException("unknown parameter kind " + s.kind());
            }
        }
    }

    static long streamSeed(long seed, String name) {
        long h = 0xCBF29CE484222325L; // FNV-1a of the name: stable across JVMs and releases
        for (byte b : name.getBytes(StandardCharsets.UTF_8)) {
            h = (h ^ (b & 0xFF)) * 0x100000001B3L;
        }
        return DropoutMasks.mix(seed ^ DropoutMasks.mix(h));
    }

    /** Box-Muller normals N(0, std). */
    static double[] normals(long seed, int n, double std) {
        SplittableRandom rng = new SplittableRandom(seed);
        double[] out = new double[n];
        for (int i = 0; i < n; i += 2) {
            double u1 = 1.0 - rng.nextDouble(); // (0, 1]: log is finite
            double u2 = rng.nextDouble();
            double r = Math.sqrt(-2.0 * Math.log(u1)) * std;
            out[i] = r * Math.cos(2.0 * Math.PI * u2);
            if (i + 1 < n) {
                out[i + 1] = r * Math.sin(2.0 * Math.PI * u2);
            }
        }
        return out;
    }
}
