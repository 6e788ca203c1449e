package io.dtrain.model;

import io.dtrain.config.ModelConfig;

/** Checkpoint names of the GPT's parameters (GPT-2 / nanoGPT style, weights stored [in, out]). */
public final class GptNames {
    public static final String WTE = "wte";
    public static final String WPE = "wpe";
    public static final String LN_F_WEIGHT = "ln_f.weight";
    public static final String LN_F_BIAS = "ln_f.bias";
    public static final String LM_HEAD_WEIGHT = "lm_head.weight";

    private GptNames() {
    }

    /** e.g. {@code block(3, "attn.c_attn.weight")} is {@code h.3.attn.c_attn.weight}. */
    public static String block(int layer, String suffix) {
        return "h." + layer + "." + suffix;
    }

    /** SameDiff variable name of a parameter: dots would clash with SameDiff's own naming. */
    static String graphName(String checkpointName) {
        return checkpointName.replace('.', '_');
    }

    /**
     * The parameter layout of a GPT split into stages: stage 0 holds wte, wpe and its blocks, the last stage its
     * blocks, ln_f (pre-norm only) and lm_head (untied only), so each stage is one contiguous range. The global
     * order does not depend on the split: only the stage tags do.
     */
    public static ParamLayout layout(ModelConfig cfg, int[] blocksPerStage) {
        long d = cfg.dModel();
        long f = cfg.ffWidth();
        long v = cfg.vocabSize();
        ParamLayout.Builder b = ParamLayout.builder();
        b.add(WTE, ParamKind.EMBEDDING, 0, v, d);
        b.add(WPE, ParamKind.EMBEDDING, 0, cfg.seqLen(), d);
        int layer = 0;
        for (int s = 0; s < blocksPerStage.length; s++) {
            for (int i = 0; i < blocksPerStage[s]; i++, layer++) {
                addNorm(b, cfg, block(layer, "ln_1"), s);
                addLinear(b, cfg, block(layer, "attn.c_attn"), s, d, 3 * d);
                addLinear(b, cfg, block(layer, "attn.c_proj"), s, d, d);
                addNorm(b, cfg, block(layer, "ln_2"), s);
                addLinear(b, cfg, block(layer, "mlp.c_fc"), s, d, f);
                addLinear(b, cfg, block(layer, "mlp.c_proj"), s, f, d);
            }
        }
        int last = blocksPerStage.length - 1;
        if (cfg.preNorm()) {
            addNorm(b, cfg, "ln_f", last);
        }
        if (!cfg.tieEmbeddings()) {
            b.add(LM_HEAD_WEIGHT, ParamKind.MATRIX, last, d, v);
        }
        return b.build();
    }

    /**
     * The layout of one pipeline stage's process: that stage's parameters of {@link #layout} (same names, kinds and
     * order, offsets from 0), and on the last stage of a tied model split into several stages a replica of wte at
     * the end, which its LM head reads (kept equal to stage 0's wte by summing their gradients every step).
     */
    public static ParamLayout stageLayout(ModelConfig cfg, int[] blocksPerStage, int stage) {
        ParamLayout full = layout(cfg, blocksPerStage);
        ParamLayout.Builder b = ParamLayout.builder();
        for (ParamSpec s : full.stageSpecs(stage)) {
            b.add(s.name(), s.kind(), stage, s.shape());
        }
        if (hasTiedReplica(cfg, blocksPerStage.length, stage)) {
            b.add(WTE, ParamKind.EMBEDDING, stage, cfg.vocabSize(), cfg.dModel());
        }
        return b.build();
    }

    /** True for the last stage of a tied model split into more than one stage: it holds a replica of wte. */
    public static boolean hasTiedReplica(ModelConfig cfg, int stages, int stage) {
        return cfg.tieEmbeddings() && stages > 1 && stage == stages - 1;
    }

    private static void addNorm(ParamLayout.Builder b, ModelConfig cfg, String prefix, int stage) {
        b.add(prefix + ".weight", ParamKind.NORM, stage, cfg.dModel());
        if (cfg.bias()) {
            b.add(prefix + ".bias", ParamKind.NORM, stage, cfg.dModel());
        }
    }

    private static void addLinear(ParamLayout.Builder b, ModelConfig cfg, String prefix, int stage, long in, long out) {
        b.add(prefix + ".weight", ParamKind.MATRIX, stage, in, out);
        if (cfg.bias()) {
            b.add(prefix + ".bias", ParamKind.BIAS, stage, out);
        }
    }
}
