package io.dtrain.model.fused;

import io.dtrain.compute.Workers;
import io.dtrain.config.ModelConfig;

/**
 * The last stage's LM head and mean cross-entropy over row chunks of at most 2^24 logits, so GPT-2's 50,257-token
 * vocabulary never materialises [N, V]: per chunk, logits = in . head (tied: wte^T), the loss of each row, and with
 * gradients dL/dlogits in place, then dL/dhead += dlogits^T . in (split by vocabulary rows, or by input columns when
 * untied) and dL/d(in) = dlogits . head (split by rows).
 */
final class Classifier {
    private final ModelConfig cfg;
    private final Blas blas;
    private final Kernels k;
    private final OpTimes ops;
    private final int d;
    private final int vocab;
    /** fp16: logits and dL/dlogits are stored rounded to half precision (the cross-entropy itself runs in fp32). */
    private boolean half;

    Classifier(ModelConfig cfg, Blas blas, Kernels k, OpTimes ops) {
        this.cfg = cfg;
        this.blas = blas;
        this.k = k;
        this.ops = ops;
        this.d = cfg.dModel();
        this.vocab = cfg.vocabSize();
    }

    void setHalfPrecision(boolean half) {
        this.half = half;
    }

    /**
     * Region body: {@code in} -> logits -> cross-entropy, over row chunks (row r's target is targets[r]); with
     * {@code train} each chunk's logits turn into gradScale x dL/dlogits in place, then dL/dhead (into grads) and
     * dL/d(in) (into dIn) follow.
     */
    void run(Workers.Team t, Tensor in, Tensor dIn, int rows, int[] targets, Scratch scratch, Weights params,
             Weights grads, double gradScale, boolean train) {
        int m = t.index();
        Tensor logits = scratch.logits;
        ops.start(t);
        for (int c0 = 0; c0 < rows; c0 += scratch.logitRows) {
            int n = Math.min(scratch.logitRows, rows - c0);
            int a = t.from(n);
            int z = t.to(n);
            logits(m, in, c0 + a, z - a, params, logits, a * vocab);
            if (half) {
                HalfRounding.round(logits, a * vocab, z * vocab);
            }
            k.crossEntropy(logits, targets, c0, vocab, scratch.losses, gradScale, a, z);
            if (half && train) {
                HalfRounding.round(logits, a * vocab, z * vocab);   // the scaled dL/dlogits, before anyone reads them
            }
            if (!train) {
                ops.charge(t, OpTimes.Kind.CLASSIFIER);
                continue;
            }
            ops.charge(t, OpTimes.Kind.CLASSIFIER);
            ops.sync(t);
            if (cfg.tieEmbeddings()) {
                // dWte[V, D] += dlogits^T . in ; d(in) = dlogits . wte
                int v0 = t.from(vocab);
                int v1 = t.to(vocab);
                blas.gemm(m, true, false, v1 - v0, d, n, 1.0, logits, v0, vocab, in, c0 * d, d, 1.0, grads.head, v0 * d, d);
                blas.gemm(m, false, false, z - a, d, vocab, 1.0, logits, a * vocab, vocab, params.head, 0, d, 0.0,
                        dIn, (c0 + a) * d, d);
            } else {
                // dHead[D, V] += in^T . dlogits ; d(in) = dlogits . head^T
                int j0 = t.from(d);
                int j1 = t.to(d);
                blas.gemm(m, true, false, j1 - j0, vocab, n, 1.0, in, c0 * d + j0, d, logits, 0, vocab, 1.0,
                        grads.head, j0 * vocab, vocab);
                blas.gemm(m, false, true, z - a, d, vocab, 1.0, logits, a * vocab, vocab, params.head, 0, vocab, 0.0,
                        dIn, (c0 + a) * d, d);
            }
            ops.charge(t, OpTimes.Kind.CLASSIFIER);
            ops.sync(t);
        }
    }

    /** out[offOut..] = in[r0 : r0+n] . head: logits [n, V]. */
    void logits(int m, Tensor in, int r0, int n, Weights params, Tensor out, int offOut) {
        if (n <= 0) {
            return;
        }
        if (cfg.tieEmbeddings()) {
            blas.gemm(m, false, true, n, vocab, d, 1.0, in, r0 * d, d, params.head, 0, d, 0.0, out, offOut, vocab);
        } else {
            blas.gemm(m, false, false, n, vocab, d, 1.0, in, r0 * d, d, params.head, 0, vocab, 0.0, out, offOut, vocab);
        }
    }
}
