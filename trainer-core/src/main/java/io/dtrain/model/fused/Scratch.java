package io.dtrain.model.fused;

import io.dtrain.config.ModelConfig;
import org.nd4j.linalg.api.ndarray.INDArray;

/** Buffers used within one pass only, shared by every slot of a stage; sized for the largest batch seen. */
final class Scratch {
    final int capacity;
    final Tensor proj;
    final Tensor act;
    final Tensor dRes;
    final Tensor dBranch;
    final Tensor dNormA;
    final Tensor dNormB;
    final Tensor dAttY;
    final Tensor dQkv;
    final Tensor dFc;
    final Tensor losses;
    final Tensor logits;
    final int logitRows;
    /** Per member: dropped-out probabilities and the probabilities' gradient of one (sample, head). */
    final Tensor[] probs;
    final Tensor[] dProbs;
    INDArray gradInputView;
    INDArray outputView;

    Scratch(ModelConfig cfg, int capacity, int members, boolean isDouble) {
        this.capacity = capacity;
        long n = (long) capacity * cfg.seqLen();
        long d = cfg.dModel();
        long f = cfg.ffWidth();
        proj = Tensor.allocate(isDouble, n * d);
        act = Tensor.allocate(isDouble, n * f);
        dRes = Tensor.allocate(isDouble, n * d);
        dBranch = Tensor.allocate(isDouble, n * d);
        dNormA = Tensor.allocate(isDouble, n * d);
        dNormB = Tensor.allocate(isDouble, n * d);
        dAttY = Tensor.allocate(isDouble, n * d);
        dQkv = Tensor.allocate(isDouble, n * 3 * d);
        dFc = Tensor.allocate(isDouble, n * f);
        losses = Tensor.allocate(isDouble, n);
        // The classifier runs over row chunks so [rows, V] logits stay small even for GPT-2's 50,257 tokens.
        logitRows = logitRows(cfg, capacity);
        logits = Tensor.allocate(isDouble, (long) logitRows * cfg.vocabSize());
        probs = new Tensor[members];
        dProbs = new Tensor[members];
        long tt = (long) cfg.seqLen() * cfg.seqLen();
        for (int i = 0; i < members; i++) {
            probs[i] = Tensor.allocate(isDouble, tt);
            dProbs[i] = Tensor.allocate(isDouble, tt);
        }
    }

    private static int logitRows(ModelConfig cfg, int capacity) {
        long n = (long) capacity * cfg.seqLen();
        return (int) Math.max(1, Math.min(n, (1L << 24) / cfg.vocabSize()));
    }

    /** Bytes the scratch buffers take for {@code capacity} sequences and {@code members} compute threads. */
    static long bytes(ModelConfig cfg, int capacity, int members) {
        long n = (long) capacity * cfg.seqLen();
        long d = cfg.dModel();
        long f = cfg.ffWidth();
        long elements = 6 * n * d + 3 * n * d + 2 * n * f + n + (long) logitRows(cfg, capacity) * cfg.vocabSize()
                + 2L * members * cfg.seqLen() * cfg.seqLen();
        return elements * (cfg.isDouble() ? 8 : 4);
    }
}
