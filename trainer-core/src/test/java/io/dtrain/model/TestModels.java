package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.nativeblas.NativeOpsHolder;

import java.util.SplittableRandom;

/** Small model configurations and random batches for the model tests. */
final class TestModels {
    private TestModels() {
    }

    private static int[] savedThreads;

    /**
     * One OpenMP and BLAS thread: these models are tiny, and on a machine shared by parallel builds, libnd4j's
     * threads waiting for each other made a forward+backward 5-10x slower. Undo with {@link #restoreThreads()}:
     * other test classes share the JVM.
     */
    static synchronized void singleThreaded() {
        if (savedThreads == null) {
            savedThreads = new int[] {Nd4j.getEnvironment().maxThreads(), Nd4j.getEnvironment().maxMasterThreads(),
                    NativeOpsHolder.getInstance().getDeviceNativeOps().ompGetMaxThreads(), Nd4j.factory().blas().getMaxThreads()};
        }
        setThreads(new int[] {1, 1, 1, 1});
    }

    static synchronized void restoreThreads() {
        if (savedThreads != null) {
            setThreads(savedThreads);
            savedThreads = null;
        }
    }

    private static void setThreads(int[] t) {
        Nd4j.getEnvironment().setMaxThreads(t[0]);
        Nd4j.getEnvironment().setMaxMasterThreads(t[1]);
        NativeOpsHolder.getInstance().getDeviceNativeOps().setOmpNumThreads(t[2]);
        Nd4j.factory().blas().setMaxThreads(t[3]);
    }

    static ModelConfig config(int vocab, int seqLen, int dModel, int nLayer, int nHead, String norm, String activation,
                              double dropout, boolean tied, boolean bias, double initStd, String dtype) {
        return config(vocab, seqLen, dModel, nLayer, nHead, norm, activation, dropout, tied, bias, initStd, 1e-5, dtype);
    }

    static ModelConfig config(int vocab, int seqLen, int dModel, int nLayer, int nHead, String norm, String activation,
                              double dropout, boolean tied, boolean bias, double initStd, double layerNormEps, String dtype) {
        return new ModelConfig(vocab, seqLen, dModel, nLayer, nHead, 0, norm, activation, dropout, tied, bias, initStd,
                layerNormEps, dtype, "samediff");
    }

    /** The same model computed by another engine ("fused" or "samediff"). */
    static ModelConfig withEngine(ModelConfig c, String engine) {
        return new ModelConfig(c.vocabSize(), c.seqLen(), c.dModel(), c.nLayer(), c.nHead(), c.dFf(), c.norm(),
                c.activation(), c.dropout(), c.tieEmbeddings(), c.bias(), c.initStd(), c.layerNormEps(), c.dtype(), engine);
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
