package io.dtrain.model.fused;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.DropoutKeys;
import org.bytedeco.javacpp.BytePointer;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Everything one micro-batch's forward pass keeps for its backward pass through one stage, allocated once for up to
 * {@code capacity} sequences and reused for every later micro-batch (smaller batches use a prefix): the residual
 * stream {@code x[l]} [N, D] with N = B*T (x[0] is the stage input, x[L] its output), on the last stage ln_f's output
 * and statistics, on stage 0 the token ids and the embedding's dropout mask, and one {@link Block} per transformer
 * block. With {@code training.recompute: blocks} every index of {@code blocks} is the same {@link Block}, a
 * workspace the stage shares between its slots: the backward pass recomputes each block's forward into it from
 * x[l] just before that block's backward.
 *
 * <p>Pre-norm block (GPT-2): norm1 = LN1(x), sum1 = x + drop(attn(norm1)), norm2 = LN2(sum1),
 * x' = sum1 + drop(mlp(norm2)). Post-norm: sum1 = x + drop(attn(x)), norm1 = LN1(sum1),
 * sum2 = norm1 + drop(mlp(norm1)), x' = LN2(sum2).
 */
final class Activations {
    /** One block's activations: LayerNorm outputs and row statistics, qkv [N, 3D], the attention probabilities
     * [B, H, T, T] (before dropout), the heads' merged output [N, D], the MLP's pre-activation [N, F], and the dropout
     * masks as bytes (1 = kept) indexed like the tensors they mask. */
    static final class Block {
        final int capacity;
        final Tensor norm1;
        final Tensor mean1;
        final Tensor rstd1;
        final Tensor sum1;
        /** Pre-norm: LN2's output; post-norm: LN2's input (sum2). */
        final Tensor norm2OrSum2;
        final Tensor mean2;
        final Tensor rstd2;
        final Tensor qkv;
        final Tensor att;
        final Tensor attY;
        final Tensor fc;
        /** Null without dropout. */
        final ByteBuffer probsMask;
        final ByteBuffer attnMask;
        final ByteBuffer mlpMask;
        private final BytePointer maskMemory;
        /** Bytes this block allocated: what {@link #bytes} predicts (asserted here, tested in ActivationSizesTest). */
        final long allocatedBytes;

        Block(ModelConfig cfg, int capacity, boolean isDouble) {
            this.capacity = capacity;
            long n = (long) capacity * cfg.seqLen();
            long d = cfg.dModel();
            long probs = probabilities(cfg, capacity);
            norm1 = Tensor.allocate(isDouble, n * d);
            mean1 = Tensor.allocate(isDouble, n);
            rstd1 = Tensor.allocate(isDouble, n);
            sum1 = Tensor.allocate(isDouble, n * d);
            norm2OrSum2 = Tensor.allocate(isDouble, n * d);
            mean2 = Tensor.allocate(isDouble, n);
            rstd2 = Tensor.allocate(isDouble, n);
            qkv = Tensor.allocate(isDouble, n * 3 * d);
            att = Tensor.allocate(isDouble, probs);
            attY = Tensor.allocate(isDouble, n * d);
            fc = Tensor.allocate(isDouble, n * cfg.ffWidth());
            if (cfg.dropout() > 0.0) {
                long total = probs + 2 * n * d;
                maskMemory = new BytePointer(total);
                ByteBuffer all = maskMemory.capacity(total).limit(total).asByteBuffer();
                probsMask = slice(all, 0, probs);
                attnMask = slice(all, probs, n * d);
                mlpMask = slice(all, probs + n * d, n * d);
            } else {
                maskMemory = null;
                probsMask = null;
                attnMask = null;
                mlpMask = null;
            }
            allocatedBytes = Tensor.bytesOf(norm1, mean1, rstd1, sum1, norm2OrSum2, mean2, rstd2, qkv, att, attY, fc)
                    + (maskMemory == null ? 0 : maskMemory.capacity());
            assert isDouble != cfg.isDouble() || allocatedBytes == bytes(cfg, capacity)
                    : "Block allocated " + allocatedBytes + " bytes, Block.bytes says " + bytes(cfg, capacity);
        }

        /** Bytes a block's activations take for {@code capacity} sequences (float or double elements + masks). */
        static long bytes(ModelConfig cfg, int capacity) {
            long n = (long) capacity * cfg.seqLen();
            long d = cfg.dModel();
            long elements = 4 * n * d + 4 * n + 3 * n * d + probabilities(cfg, capacity) + n * cfg.ffWidth();
            return elements * (cfg.isDouble() ? 8 : 4) + maskBytes(cfg, capacity);
        }

        /** The dropout masks' share of {@link #bytes}: JavaCPP memory, counted against javacpp.maxbytes. */
        static long maskBytes(ModelConfig cfg, int capacity) {
            long n = (long) capacity * cfg.seqLen();
            return cfg.dropout() > 0.0 ? probabilities(cfg, capacity) + 2 * n * cfg.dModel() : 0;
        }

        private static long probabilities(ModelConfig cfg, int capacity) {
            return (long) capacity * cfg.nHead() * cfg.seqLen() * cfg.seqLen();
        }
    }

    final int capacity;
    final Tensor[] x;
    final Block[] blocks;
    /** Last stage, pre-norm: ln_f's output and statistics. */
    final Tensor lnf;
    final Tensor meanF;
    final Tensor rstdF;
    /** Stage 0 with dropout: the embedding's mask (else null). */
    final ByteBuffer embeddingMask;
    private final BytePointer embeddingMaskMemory;
    /** Batch size, token ids (stage 0: the embedding's backward needs them) and dropout keys of the forward pass held. */
    int batch;
    final int[] tokens;
    DropoutKeys keys;
    /** Bytes this set allocated itself (a shared workspace not included): what {@link #bytes} predicts. */
    final long allocatedBytes;

    /**
     * @param workspace null: one {@link Block} per transformer block; else the block every index shares (recompute)
     */
    Activations(ModelConfig cfg, int blocks, boolean first, boolean last, int capacity, boolean isDouble, Block workspace) {
        this.capacity = capacity;
        long n = (long) capacity * cfg.seqLen();
        long d = cfg.dModel();
        this.tokens = new int[first ? (int) n : 0];
        x = new Tensor[blocks + 1];
        for (int l = 0; l <= blocks; l++) {
            x[l] = Tensor.allocate(isDouble, n * d);
        }
        this.blocks = new Block[blocks];
        for (int l = 0; l < blocks; l++) {
            this.blocks[l] = workspace != null ? workspace : new Block(cfg, capacity, isDouble);
        }
        boolean lnF = last && cfg.preNorm();
        lnf = lnF ? Tensor.allocate(isDouble, n * d) : null;
        meanF = lnF ? Tensor.allocate(isDouble, n) : null;
        rstdF = lnF ? Tensor.allocate(isDouble, n) : null;
        if (first && cfg.dropout() > 0.0) {
            embeddingMaskMemory = new BytePointer(n * d);
            embeddingMask = slice(embeddingMaskMemory.capacity(n * d).limit(n * d).asByteBuffer(), 0, n * d);
        } else {
            embeddingMaskMemory = null;
            embeddingMask = null;
        }
        boolean recompute = workspace != null;
        long own = Tensor.bytesOf(x) + Tensor.bytesOf(lnf, meanF, rstdF) + 4L * tokens.length
                + (embeddingMaskMemory == null ? 0 : embeddingMaskMemory.capacity());
        for (int l = 0; l < blocks && !recompute; l++) {
            own += this.blocks[l].allocatedBytes;
        }
        allocatedBytes = own;
        assert isDouble != cfg.isDouble() || allocatedBytes == bytes(cfg, blocks, first, last, capacity, recompute)
                : "Activations allocated " + allocatedBytes + " bytes, Activations.bytes says "
                        + bytes(cfg, blocks, first, last, capacity, recompute);
    }

    /**
     * Bytes one slot's activations take for {@code capacity} sequences: the residual stream, ln_f, the tokens and
     * the embedding mask, plus one {@link Block} per transformer block (none when the blocks are recomputed into a
     * shared workspace, which {@link Block#bytes} sizes).
     */
    static long bytes(ModelConfig cfg, int blocks, boolean first, boolean last, int capacity, boolean recompute) {
        long n = (long) capacity * cfg.seqLen();
        long d = cfg.dModel();
        long elements = (blocks + 1) * n * d + (last && cfg.preNorm() ? n * d + 2 * n : 0);
        long bytes = elements * (cfg.isDouble() ? 8 : 4) + (first ? 4 * n : 0)
                + (first && cfg.dropout() > 0.0 ? n * d : 0);
        return bytes + (recompute ? 0 : blocks * Block.bytes(cfg, capacity));
    }

    /** The dropout masks' share of {@link #bytes}: JavaCPP memory, counted against javacpp.maxbytes. */
    static long maskBytes(ModelConfig cfg, int blocks, boolean first, int capacity, boolean recompute) {
        long n = (long) capacity * cfg.seqLen();
        return (first && cfg.dropout() > 0.0 ? n * cfg.dModel() : 0) + (recompute ? 0 : blocks * Block.maskBytes(cfg, capacity));
    }

    private static ByteBuffer slice(ByteBuffer all, long at, long length) {
        return all.slice((int) at, (int) length).order(ByteOrder.nativeOrder());
    }
}
