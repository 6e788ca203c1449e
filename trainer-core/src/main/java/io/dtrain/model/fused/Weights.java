package io.dtrain.model.fused;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * One stage's parameters (or gradients) as {@link Tensor}s inside a flat buffer laid out by the stage's
 * {@link ParamLayout}: bound once per buffer, so the kernels read and BLAS writes the trainer's own memory with
 * no copies. Null where the configuration has no such tensor (biases with {@code bias: false}, ln_f under
 * post-norm, the head of a non-last stage).
 */
final class Weights {
    /** One transformer block's tensors. */
    static final class Block {
        Tensor ln1W;
        Tensor ln1B;
        Tensor attnW;
        Tensor attnB;
        Tensor projW;
        Tensor projB;
        Tensor ln2W;
        Tensor ln2B;
        Tensor fcW;
        Tensor fcB;
        Tensor fc2W;
        Tensor fc2B;
    }

    final INDArray flat;
    final Block[] blocks;
    final Tensor wte;
    final Tensor wpe;
    final Tensor lnfW;
    final Tensor lnfB;
    /** The LM head: wte itself when tied (read as [V, D]), else lm_head.weight [D, V]. */
    final Tensor head;

    Weights(ModelConfig cfg, ParamLayout layout, INDArray flat, boolean first, boolean last, int firstBlock, int endBlock) {
        this.flat = flat;
        this.blocks = new Block[endBlock - firstBlock];
        for (int l = firstBlock; l < endBlock; l++) {
            Block b = new Block();
            b.ln1W = tensor(layout, flat, GptNames.block(l, "ln_1.weight"));
            b.ln1B = tensor(layout, flat, GptNames.block(l, "ln_1.bias"));
            b.attnW = tensor(layout, flat, GptNames.block(l, "attn.c_attn.weight"));
            b.attnB = tensor(layout, flat, GptNames.block(l, "attn.c_attn.bias"));
            b.projW = tensor(layout, flat, GptNames.block(l, "attn.c_proj.weight"));
            b.projB = tensor(layout, flat, GptNames.block(l, "attn.c_proj.bias"));
            b.ln2W = tensor(layout, flat, GptNames.block(l, "ln_2.weight"));
            b.ln2B = tensor(layout, flat, GptNames.block(l, "ln_2.bias"));
            b.fcW = tensor(layout, flat, GptNames.block(l, "mlp.c_fc.weight"));
            b.fcB = tensor(layout, flat, GptNames.block(l, "mlp.c_fc.bias"));
            b.fc2W = tensor(layout, flat, GptNames.block(l, "mlp.c_proj.weight"));
            b.fc2B = tensor(layout, flat, GptNames.block(l, "mlp.c_proj.bias"));
            blocks[l - firstBlock] = b;
        }
        boolean tiedHead = last && cfg.tieEmbeddings();
        this.wte = first || tiedHead ? tensor(layout, flat, GptNames.WTE) : null;
        this.wpe = first ? tensor(layout, flat, GptNames.WPE) : null;
        this.lnfW = last ? tensor(layout, flat, GptNames.LN_F_WEIGHT) : null;
        this.lnfB = last ? tensor(layout, flat, GptNames.LN_F_BIAS) : null;
        this.head = !last ? null : tiedHead ? wte : tensor(layout, flat, GptNames.LM_HEAD_WEIGHT);
    }

    private static Tensor tensor(ParamLayout layout, INDArray flat, String name) {
        if (!layout.contains(name)) {
            return null;
        }
        ParamSpec s = layout.spec(name);
        return Tensor.view(flat, s.offset(), s.end());
    }
}
