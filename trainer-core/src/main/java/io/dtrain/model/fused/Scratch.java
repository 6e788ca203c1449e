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

    /** Bytes allocated (what {@link #bytes} predicts; a test holds them equal). */
    final long allocatedBytes;
    private long counted;

    /** The bytes a stage's scratch allocates for {@code capacity} sequences and {@code members} compute threads. */
    static long bytes(ModelConfig cfg, int capacity, int members) {
        long n = (long) capacity * cfg.seqLen();
        long d = cfg.dModel();
        long f = cfg.ffWidth();
        long tt = (long) cfg.seqLen() * cfg.seqLen();
        long elements = 6 * tensor(n * d) + 2 * tensor(n * f) + tensor(n * 3 * d) + tensor(n)
                + tensor((long) logitRows(cfg, n) * cfg.vocabSize()) + 2L * members * tensor(tt);
        return elements * (cfg.isDouble() ? 8 : 4);
    }

    /** The classifier runs over row chunks so [rows, V] logits stay small even for GPT-2's 50,257 tokens. */
    private static int logitRows(ModelConfig cfg, long n) {
        return (int) Math.max(1, Math.min(n, (1L << 24) / cfg.vocabSize()));
    }

    private static long tensor(long size) {
        return Math.max(1, size);
    }

    private Tensor allocate(boolean isDouble, long size) {
        counted += tensor(size) * (isDouble ? 8 : 4);
        return Tensor.allocate(isDouble, size);
    }

    Scratch(ModelConfig cfg, int capacity, int members, boolean isDouble) {
        this.capacity = capacity;
        long n = (long) capacity * cfg.seqLen();
        long d = cfg.dModel();
        long f = cfg.ffWidth();
        proj = allocate(isDouble, n * d);
        act = allocate(isDouble, n * f);
        dRes = allocate(isDouble, n * d);
        dBranch = allocate(isDouble, n * d);
        dNormA = allocate(isDouble, n * d);
        dNormB = allocate(isDouble, n * d);
        dAttY = allocate(isDouble, n * d);
        dQkv = allocate(isDouble, n * 3 * d);
        dFc = allocate(isDouble, n * f);
        losses = allocate(isDouble, n);
        logitRows = logitRows(cfg, n);
        logits = allocate(isDouble, (long) logitRows * cfg.vocabSize());
        probs = new Tensor[members];
        dProbs = new Tensor[members];
        long tt = (long) cfg.seqLen() * cfg.seqLen();
        for (int i = 0; i < members; i++) {
            probs[i] = allocate(isDouble, tt);
            dProbs[i] = allocate(isDouble, tt);
        }
        allocatedBytes = counted;
        assert isDouble != cfg.isDouble() || counted == bytes(cfg, capacity, members)
                : "Scratch allocated " + counted + " bytes, Scratch.bytes says " + bytes(cfg, capacity, members);
    }
}
