package io.dtrain.hf;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Hugging Face's GPT-2 ({@code GPT2LMHeadModel}) as dtrain's model: tensor names, shapes and layout, and
 * {@code config.json}. dtrain's names are GPT-2's without the {@code transformer.} prefix ({@code wte} is
 * {@code transformer.wte.weight}, {@code h.0.attn.c_attn.weight} is {@code transformer.h.0.attn.c_attn.weight}),
 * and its weights are already [in, out] like GPT-2's Conv1D, so every tensor is copied as it is except the untied
 * head: dtrain's {@code lm_head.weight} is [d_model, vocab], GPT-2's an {@code nn.Linear} weight [vocab, d_model].
 * A tied head is not stored (GPT-2 ties it to {@code wte}).
 *
 * <p>What GPT-2 cannot express: post-LayerNorm blocks ({@code model.norm: post}), refused. The documented
 * alternatives: ReLU is {@code activation_function: "relu"} (GPT-2's MLP takes its activation from the config);
 * a model without biases ({@code model.bias: false}) gets zero biases, which compute the same.
 */
public final class HfGpt2 {
    public static final String PREFIX = "transformer.";

    /**
     * One tensor of the GPT-2 file.
     *
     * @param hfName     its name in the file
     * @param hfShape    its shape in the file
     * @param source     the dtrain parameter it holds, or null for a zero bias of a model without biases
     * @param transposed the file holds dtrain's tensor transposed (the untied head)
     */
    public record Tensor(String hfName, long[] hfShape, String source, boolean transposed) {
    }

    private HfGpt2() {
    }

    /** Refuses a configuration GPT-2 cannot express, saying why. */
    public static void requireExpressible(ModelConfig cfg, String action) {
        if (!cfg.preNorm()) {
            throw new ModelFileException("cannot " + action + ": model.norm is '" + cfg.norm() + "', but GPT-2"
                    + " (GPT2LMHeadModel) applies LayerNorm before each sublayer and once more at the end (pre-LN);"
                    + " a post-LN model would load without an error and compute something else. Only model.norm: pre"
                    + " has a GPT-2 layout");
        }
    }

    /** The name in a GPT-2 file of a dtrain parameter. */
    public static String hfName(String dtrainName) {
        return switch (dtrainName) {
            case GptNames.WTE, GptNames.WPE -> PREFIX + dtrainName + ".weight";
            case GptNames.LM_HEAD_WEIGHT -> dtrainName;
            default -> PREFIX + dtrainName;
        };
    }

    /**
     * The dtrain name of a tensor of a GPT-2 file (with or without the {@code transformer.} prefix, as the original
     * OpenAI conversion wrote them), or null for GPT-2's causal-mask buffers ({@code h.N.attn.bias},
     * {@code h.N.attn.masked_bias}), which are not parameters.
     */
    public static String dtrainName(String hfName) {
        String n = hfName.startsWith(PREFIX) ? hfName.substring(PREFIX.length()) : hfName;
        if (n.endsWith(".attn.bias") || n.endsWith(".attn.masked_bias")) {
            return null;
        }
        return switch (n) {
            case "wte.weight" -> GptNames.WTE;
            case "wpe.weight" -> GptNames.WPE;
            default -> n;
        };
    }

    /** Every tensor of the GPT-2 file of {@code cfg}, in dtrain's parameter order (biases even if the model has none). */
    public static List<Tensor> tensors(ModelConfig cfg) {
        ParamLayout own = GptNames.layout(cfg, new int[] {cfg.nLayer()});
        ParamLayout withBiases = GptNames.layout(withBias(cfg), new int[] {cfg.nLayer()});
        List<Tensor> out = new ArrayList<>();
        for (ParamSpec s : withBiases.specs()) {
            boolean head = s.name().equals(GptNames.LM_HEAD_WEIGHT);
            long[] shape = head ? new long[] {s.shape()[1], s.shape()[0]} : s.shape();
            out.add(new Tensor(hfName(s.name()), shape, own.contains(s.name()) ? s.name() : null, head));
        }
        return out;
    }

    /** {@code config.json} of {@code GPT2LMHeadModel} for {@code cfg}; {@code eotId} is the end-of-text token. */
    public static Map<String, Object> configJson(ModelConfig cfg, int eotId) {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("architectures", List.of("GPT2LMHeadModel"));
        c.put("model_type", "gpt2");
        c.put("vocab_size", cfg.vocabSize());
        c.put("n_positions", cfg.seqLen());
        c.put("n_ctx", cfg.seqLen());
        c.put("n_embd", cfg.dModel());
        c.put("n_layer", cfg.nLayer());
        c.put("n_head", cfg.nHead());
        c.put("n_inner", cfg.dFf() > 0 ? cfg.dFf() : null);
        c.put("activation_function", hfActivation(cfg.activation()));
        c.put("resid_pdrop", cfg.dropout());
        c.put("embd_pdrop", cfg.dropout());
        c.put("attn_pdrop", cfg.dropout());
        c.put("layer_norm_epsilon", cfg.layerNormEps());
        c.put("initializer_range", cfg.initStd());
        c.put("scale_attn_weights", true);
        c.put("scale_attn_by_inverse_layer_idx", false);
        c.put("reorder_and_upcast_attn", false);
        c.put("tie_word_embeddings", cfg.tieEmbeddings());
        c.put("bos_token_id", eotId);
        c.put("eos_token_id", eotId);
        c.put("use_cache", true);
        c.put("torch_dtype", cfg.isDouble() ? "float64" : "float32");
        return c;
    }

    /** GPT-2's name of dtrain's activation: its GELU is the tanh approximation, GPT-2's "gelu_new". */
    static String hfActivation(String activation) {
        return activation.equals("gelu") ? "gelu_new" : activation;
    }

    /** True if a GPT-2 {@code activation_function} computes dtrain's {@code activation}. */
    static boolean sameActivation(String hf, String activation) {
        return activation.equals("gelu") ? hf.equals("gelu_new") || hf.equals("gelu_pytorch_tanh") : hf.equals(activation);
    }

    private static ModelConfig withBias(ModelConfig c) {
        return new ModelConfig(c.vocabSize(), c.seqLen(), c.dModel(), c.nLayer(), c.nHead(), c.dFf(), c.norm(),
                c.activation(), c.dropout(), c.tieEmbeddings(), true, c.initStd(), c.layerNormEps(), c.dtype(),
                c.engine(), c.initFrom());
    }
}
