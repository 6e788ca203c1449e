package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.nativeblas.Nd4jBlas;
import org.nd4j.nativeblas.NativeOpsHolder;

import java.util.SplittableRandom;

/** Small model configurations and random batches for the model tests. */
final class TestModels {
    private TestModels() {
    }

    /**
     * One OpenMP and BLAS thread: these models are tiny, and on a machine shared by parallel builds, libnd4j's
     * threads waiting for each other made a forward+backward 5-10x slower.
     */
    static void singleThreaded() {
        Nd4j.getEnvironment().setMaxThreads(1);
        Nd4j.getEnvironment().setMaxMasterThreads(1);
        NativeOpsHolder.getInstance().getDeviceNativeOps().setOmpNumThreads(1);
        ((Nd4jBlas) Nd4j.factory().blas()).setMaxThreads(1);
    }

    static ModelConfig config(int vocab, int seqLen, int dModel, int nLayer, int nHead, String norm, String activation,
                              double dropout, boolean tied, boolean bias, double initStd, String dtype) {
        return new ModelConfig(vocab, seqLen, dModel, nLayer, nHead, 0, norm, activation, dropout, tied, bias, initStd,
                1e-5, dtype);
    }

    /** Random windows [batch][seqLen + 1] with tokens in [0, maxToken). */
    static int[][] randomWindows(long seed, int batch, int seqLen, int maxToken) {
        SplittableRandom rng = new SplittableRandom(seed);
        int[][] w = new int[batch][seqLen + 1];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t <= seqLen; t++) {
                w[b][t] = rng.nextInt(maxToken);
            }
        }
        return w;
    }

    static long[] range(long first, int n) {
        long[] out = new long[n];
        for (int i = 0; i < n; i++) {
            out[i] = first + i;
        }
        return out;
    }
}
