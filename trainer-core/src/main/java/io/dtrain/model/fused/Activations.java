package io.dtrain.model.fused;

import io.dtrain.config.ModelConfig;
import org.bytedeco.javacpp.BytePointer;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Everything one micro-batch's forward pass keeps for its backward pass through one stage, allocated once for
 * up to {@code capacity} sequences and reused for every later micro-batch (smaller batches use a prefix).
 * Shapes per block, with N = B*T rows: the residual stream {@code x[l]} [N, D] (x[0] is the stage input, x[L]
 * its output); LayerNorm outputs and their row statistics; qkv [N, 3D]; attention probabilities
 * [B, H, T, T] (before dropout); the heads' merged output [N, D]; the MLP's pre-activation [N, F]; and the dropout
 * masks as bytes (1 = kept), indexed like the tensors they mask.
 *
 * <p>Pre-norm block (GPT-2): norm1 = LN1(x), sum1 = x + drop(attn(norm1)), norm2 = LN2(sum1),
 * x' = sum1 + drop(mlp(norm2)). Post-norm: sum1 = x + drop(attn(x)), norm1 = LN1(sum1),
 * sum2 = norm1 + drop(mlp(norm1)), x' = LN2(sum2).
 */
final class Activations {
    final int capacity;
    final Tensor[] x;
    final Tensor[] norm1;
    final Tensor[] mean1;
    final Tensor[] rstd1;
    final Tensor[] sum1;
    /** Pre-norm: LN2's output; post-norm: LN2's input (sum2). */
    final Tensor[] norm2OrSum2;
    final Tensor[] mean2;
    final Tensor[] rstd2;
    final Tensor[] qkv;
    final Tensor[] att;
    final Tensor[] attY;
    final Tensor[] fc;
    /** Last stage, pre-norm: ln_f's output and statistics. */
    final Tensor lnf;
    final Tensor meanF;
    final Tensor rstdF;
    /** Dropout masks (null without dropout): the embedding's, and per block the probabilities' and the two residual branches'. */
    final ByteBuffer embeddingMask;
    final ByteBuffer[] probsMask;
    final ByteBuffer[] attnMask;
    final ByteBuffer[] mlpMask;
    /** Keeps the mask memory owned while the buffers are in use. */
    private final BytePointer maskMemory;
    /** Batch size, token ids (stage 0: the embedding's backward needs them) and dropout keys of the forward pass held. */
    int batch;
    final int[] tokens;
    io.dtrain.model.DropoutKeys keys;

    /** Bytes allocated for this set (tensors, masks and token ids): what {@link #bytes} predicts. */
    final long allocatedBytes;
    private long counted;

    /**
     * The bytes one set allocates for {@code capacity} sequences: tensors and dropout masks off-heap, token ids on
     * the heap. The constructor allocates exactly this (it asserts so, and {@code ActivationSizesTest} checks every
     * kind of stage), so a memory estimate built on it cannot drift from the engine.
     */
    static long bytes(ModelConfig cfg, int blocks, boolean first, boolean last, int capacity) {
        long n = (long) capacity * cfg.seqLen();
        long d = cfg.dModel();
        long probs = probs(cfg, capacity);
        long perBlock = 4 * tensor(n * d) + 4 * tensor(n) + tensor(n * 3 * d) + tensor(probs) + tensor(n * cfg.ffWidth());
        long elements = (blocks + 1) * tensor(n * d) + blocks * perBlock
                + (last && cfg.preNorm() ? tensor(n * d) + 2 * tensor(n) : 0);
        return elements * (cfg.isDouble() ? 8 : 4) + maskBytes(cfg, blocks, first, capacity) + (first ? 4 * n : 0);
    }

    /** The dropout masks' share of {@link #bytes}: JavaCPP-allocated, so counted against javacpp.maxbytes. */
    static long maskBytes(ModelConfig cfg, int blocks, boolean first, int capacity) {
        if (cfg.dropout() <= 0.0) {
            return 0;
        }
        long n = (long) capacity * cfg.seqLen();
        return (first ? n * cfg.dModel() : 0) + blocks * (probs(cfg, capacity) + 2 * n * cfg.dModel());
    }

    private static long probs(ModelConfig cfg, int capacity) {
        return (long) capacity * cfg.nHead() * cfg.seqLen() * cfg.seqLen();
    }

    /** Elements {@link Tensor#allocate} takes for a tensor of {@code size} (at least one). */
    private static long tensor(long size) {
        return Math.max(1, size);
    }

    private Tensor allocate(boolean isDouble, long size) {
        counted += tensor(size) * (isDouble ? 8 : 4);
        return Tensor.allocate(isDouble, size);
    }

    Activations(ModelConfig cfg, int blocks, boolean first, boolean last, int capacity, boolean isDouble) {
        this.capacity = capacity;
        long n = (long) capacity * cfg.seqLen();
        this.tokens = new int[first ? (int) n : 0];
        counted += 4L * tokens.length;
        long d = cfg.dModel();
        long probs = probs(cfg, capacity);
        x = new Tensor[blocks + 1];
        for (int l = 0; l <= blocks; l++) {
            x[l] = allocate(isDouble, n * d);
        }
        norm1 = new Tensor[blocks];
        mean1 = new Tensor[blocks];
        rstd1 = new Tensor[blocks];
        sum1 = new Tensor[blocks];
        norm2OrSum2 = new Tensor[blocks];
        mean2 = new Tensor[blocks];
        rstd2 = new Tensor[blocks];
        qkv = new Tensor[blocks];
        att = new Tensor[blocks];
        attY = new Tensor[blocks];
        fc = new Tensor[blocks];
        for (int l = 0; l < blocks; l++) {
            norm1[l] = allocate(isDouble, n * d);
            mean1[l] = allocate(isDouble, n);
            rstd1[l] = allocate(isDouble, n);
            sum1[l] = allocate(isDouble, n * d);
            norm2OrSum2[l] = allocate(isDouble, n * d);
            mean2[l] = allocate(isDouble, n);
            rstd2[l] = allocate(isDouble, n);
            qkv[l] = allocate(isDouble, n * 3 * d);
            att[l] = allocate(isDouble, probs);
            attY[l] = allocate(isDouble, n * d);
            fc[l] = allocate(isDouble, n * cfg.ffWidth());
        }
        boolean lnF = last && cfg.preNorm();
        lnf = lnF ? allocate(isDouble, n * d) : null;
        meanF = lnF ? allocate(isDouble, n) : null;
        rstdF = lnF ? allocate(isDouble, n) : null;
        if (cfg.dropout() > 0.0) {
            long perBlock = probs + 2 * n * d;
            long total = (first ? n * d : 0) + blocks * perBlock;
            maskMemory = new BytePointer(total);
            counted += total;
            ByteBuffer all = maskMemory.capacity(total).limit(total).asByteBuffer();
            int at = 0;
            embeddingMask = first ? slice(all, at, n * d) : null;
            at += first ? (int) (n * d) : 0;
            probsMask = new ByteBuffer[blocks];
            attnMask = new ByteBuffer[blocks];
            mlpMask = new ByteBuffer[blocks];
            for (int l = 0; l < blocks; l++) {
                probsMask[l] = slice(all, at, probs);
                at += (int) probs;
                attnMask[l] = slice(all, at, n * d);
                at += (int) (n * d);
                mlpMask[l] = slice(all, at, n * d);
                at += (int) (n * d);
            }
        } else {
            maskMemory = null;
            embeddingMask = null;
            probsMask = null;
            attnMask = null;
            mlpMask = null;
        }
        allocatedBytes = counted;
        assert isDouble != cfg.isDouble() || counted == bytes(cfg, blocks, first, last, capacity)
                : "Activations allocated " + counted + " bytes, Activations.bytes says " + bytes(cfg, blocks, first, last, capacity);
    }

    private static ByteBuffer slice(ByteBuffer all, int at, long length) {
        return all.slice(at, (int) length).order(ByteOrder.nativeOrder());
    }
}
