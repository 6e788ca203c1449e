package io.dtrain.model.samediff;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.DropoutMasks;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import org.nd4j.autodiff.samediff.SDVariable;
import org.nd4j.autodiff.samediff.SameDiff;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The GPT of one pipeline stage written as a SameDiff graph: this project's nanoGPT {@code model.py}. Blocks
 * [firstBlock, endBlock); stage 0 also the embedding dropout (the lookup itself runs outside the graph, see
 * {@link TokenEmbedding}); the last stage also ln_f (pre-norm), the LM head and the cross-entropy.
 *
 * <p>Activations are [B*T, D]. Placeholders: {@code x_in} [B*T, D]; the dropout masks (only with dropout);
 * {@code g_out} [B*T, D] on non-last stages, whose loss {@code sum(x_out * g_out)} makes {@code calculateGradients}
 * return the vector-Jacobian product; {@code targets} int [B*T] on the last stage. {@link SameDiffStage} runs it.
 *
 * <p>fp16 ({@code half}): the graph stays float32 and rounds to fp16 ({@link #store}: a cast to HALF and back)
 * every activation the fused engine's emulation stores, at the same points; each rounding's backward rounds the
 * gradient arriving there, so the activation gradients are fp16 too. GEMMs multiply the fp16-rounded values in
 * float32 (fp32 accumulation, as tensor cores do): ND4J's HALF GEMM accumulates in fp16 (trainer-core/README.md).
 * The weights are the fp16-rounded copy the caller hands in; their gradients stay fp32. The cross-entropy is
 * written out (see {@link #crossEntropyHalf}) so that the loss scale reaches dL/dlogits before it is rounded.
 */
final class GptGraph {
    static final String X_IN = "x_in";
    static final String X_OUT = "x_out";
    static final String G_OUT = "g_out";
    static final String TARGETS = "targets";
    static final String LOSS = "loss";
    static final String LOGITS = "logits";
    static final String MASK_EMBEDDING = "mask_emb";
    private static final String X_IN_ANCHOR = "x_in_anchor";
    private static final String BACKWARD_LOSS = "backward_loss";
    private static final String LOSS_SUM = "loss_sum";
    /** fp16: the factor the summed loss is multiplied by before the backward pass (loss scale / tokens). */
    static final String LOSS_SCALE = "loss_scale";

    final SameDiff sd = SameDiff.create();
    /** Checkpoint names of the parameters this stage's graph uses and owns (not wte/wpe: they are outside). */
    final List<String> ownedParams;
    /** Variables to differentiate: owned parameters, the tied head replica, x_in. */
    final List<String> gradVariables = new ArrayList<>();
    private final ModelConfig cfg;
    private final DataType dtype;
    private final int seqLen;
    private final int dModel;
    private final boolean dropout;
    private final boolean half;

    GptGraph(ModelConfig cfg, ParamLayout layout, boolean first, boolean last, int firstBlock, int endBlock,
             boolean half) {
        this.cfg = cfg;
        this.half = half;
        this.dtype = cfg.isDouble() ? DataType.DOUBLE : DataType.FLOAT;
        this.seqLen = cfg.seqLen();
        this.dModel = cfg.dModel();
        this.dropout = cfg.dropout() > 0.0;
        boolean tiedHead = last && cfg.tieEmbeddings();
        // The graph's own parameters: its blocks', and on the last stage ln_f's and an untied head's (wte and wpe
        // are used outside the graph, or as the tied head's replica below).
        List<String> owned = new ArrayList<>();
        for (ParamSpec s : layout.specs()) {
            if (ownedBy(s.name(), firstBlock, endBlock, last)) {
                owned.add(s.name());
            }
        }
        this.ownedParams = Collections.unmodifiableList(owned);
        for (String name : ownedParams) {
            sd.var(graphName(name), Nd4j.zeros(dtype, layout.spec(name).shape()));
            gradVariables.add(graphName(name));
        }
        if (tiedHead) {
            sd.var(graphName(GptNames.WTE), Nd4j.zeros(dtype, cfg.vocabSize(), dModel));
            gradVariables.add(graphName(GptNames.WTE));
        }
        gradVariables.add(X_IN);

        // SameDiff M2.1 differentiates only ops downstream of a trainable variable, so the gradient of the x_in
        // placeholder would miss every path that reaches a parameter only later (LayerNorm's mean and variance,
        // for one). Adding a trainable zero makes all of them differentiable; x + 0 == x exactly.
        SDVariable anchor = sd.var(X_IN_ANCHOR, Nd4j.scalar(dtype, 0.0));
        SDVariable x = sd.placeHolder(X_IN, dtype, -1, dModel).add(anchor);
        if (first && dropout) {
            x = x.mul(sd.placeHolder(MASK_EMBEDDING, dtype, -1, dModel));
        }
        x = store(x);
        SDVariable causalMask = sd.constant("causal_mask", causalMask());
        for (int layer = firstBlock; layer < endBlock; layer++) {
            x = block(layer, x, causalMask);
        }
        if (!last) {
            SDVariable out = x.rename(X_OUT);
            SDVariable gOut = sd.placeHolder(G_OUT, dtype, -1, dModel);
            sd.sum(BACKWARD_LOSS, out.mul(gOut));
            sd.setLossVariables(BACKWARD_LOSS);
            return;
        }
        if (cfg.preNorm()) {
            x = layerNorm(x, "ln_f");
        }
        SDVariable logits = store(tiedHead
                ? sd.mmul(x, param(GptNames.WTE), false, true, false)
                : sd.mmul(x, param(GptNames.LM_HEAD_WEIGHT))).rename(LOGITS);
        SDVariable targets = sd.placeHolder(TARGETS, DataType.INT32, -1);
        if (half) {
            SDVariable perToken = crossEntropyHalf(logits, targets);
            sd.mean(LOSS, perToken);
            sd.sum(LOSS_SUM, perToken.mul(sd.placeHolder(LOSS_SCALE, dtype)));
            sd.setLossVariables(LOSS_SUM);
            return;
        }
        SDVariable perToken = sd.loss.sparseSoftmaxCrossEntropy(logits, targets);
        sd.mean(LOSS, perToken);
        // M2.1's sparse cross-entropy backward ignores its upstream gradient (it always returns softmax - onehot),
        // so differentiating mean() would give N times the gradient. Differentiate the sum, whose upstream
        // gradient is exactly 1 per token, and scale the gradients by 1/N afterwards (see SameDiffStage.loss).
        sd.sum(LOSS_SUM, perToken);
        sd.setLossVariables(LOSS_SUM);
    }

    /**
     * fp16's per-token cross-entropy [N, 1], in float32 from the fp16 logits, written out (max-shifted log-sum-exp
     * minus the target's logit): M2.1's sparse cross-entropy backward ignores its upstream gradient, so the loss scale
     * could not reach dL/dlogits before its fp16 rounding. Costs a one-hot [N, V] float32 array.
     */
    private SDVariable crossEntropyHalf(SDVariable logits, SDVariable targets) {
        SDVariable shifted = logits.sub(logits.max(true, 1));
        SDVariable oneHot = sd.oneHot(targets, cfg.vocabSize(), -1, 1.0, 0.0, dtype);
        return sd.math.log(sd.math.exp(shifted).sum(true, 1)).sub(shifted.mul(oneHot).sum(true, 1));
    }

    /**
     * fp16: x rounded to half precision (round to nearest even, 65504 and above to infinity), still float32: where
     * the fused engine's emulation stores a value. Its backward rounds the incoming gradient the same way.
     */
    private SDVariable store(SDVariable x) {
        return half ? x.castTo(DataType.HALF).castTo(dtype) : x;
    }

    private static boolean ownedBy(String name, int firstBlock, int endBlock, boolean last) {
        for (int l = firstBlock; l < endBlock; l++) {
            if (name.startsWith("h." + l + ".")) {
                return true;
            }
        }
        return last && (name.startsWith("ln_f.") || name.equals(GptNames.LM_HEAD_WEIGHT));
    }

    /** SameDiff variable name of a parameter: dots would clash with SameDiff's own naming. */
    static String graphName(String checkpointName) {
        return checkpointName.replace('.', '_');
    }

    static String maskName(int layer, int site) {
        return "mask_" + layer + "_" + site;
    }

    /** Additive causal mask [T, T]: 0 on and below the diagonal, -1e9 above (exp underflows to exactly 0). */
    private INDArray causalMask() {
        double[] m = new double[seqLen * seqLen];
        for (int i = 0; i < seqLen; i++) {
            for (int j = i + 1; j < seqLen; j++) {
                m[i * seqLen + j] = -1e9;
            }
        }
        return Nd4j.create(m, new long[] {seqLen, seqLen}, DataType.DOUBLE).castTo(dtype);
    }

    private SDVariable block(int layer, SDVariable x, SDVariable causalMask) {
        String p = "h." + layer + ".";
        if (cfg.preNorm()) {
            SDVariable a = attention(layer, layerNorm(x, p + "ln_1"), causalMask);
            x = store(x.add(dropout(a, maskName(layer, DropoutMasks.SITE_ATTENTION_RESIDUAL))));
            SDVariable m = mlp(layer, layerNorm(x, p + "ln_2"));
            return store(x.add(dropout(m, maskName(layer, DropoutMasks.SITE_MLP_RESIDUAL))));
        }
        SDVariable a = attention(layer, x, causalMask);
        x = layerNorm(store(x.add(dropout(a, maskName(layer, DropoutMasks.SITE_ATTENTION_RESIDUAL)))), p + "ln_1");
        SDVariable m = mlp(layer, x);
        return layerNorm(store(x.add(dropout(m, maskName(layer, DropoutMasks.SITE_MLP_RESIDUAL)))), p + "ln_2");
    }

    private SDVariable attention(int layer, SDVariable h, SDVariable causalMask) {
        int heads = cfg.nHead();
        int headDim = cfg.headDim();
        SDVariable qkv = linear(h, "h." + layer + ".attn.c_attn");
        SDVariable[] parts = sd.split(qkv, 3, 1);
        // Scaling q (B*T*D elements) instead of the scores (B*H*T*T) is the same product, fewer flops.
        SDVariable q = splitHeads(parts[0]).mul(1.0 / Math.sqrt(headDim));
        SDVariable k = splitHeads(parts[1]);
        SDVariable v = splitHeads(parts[2]);
        // fp16: the scores and the probabilities are stored rounded, as an unfused GPU attention stores them
        SDVariable att = store(sd.mmul(q, k, false, true, false)).add(causalMask);
        att = store(sd.nn.softmax(att, 3));
        if (dropout) {
            att = att.mul(sd.placeHolder(maskName(layer, DropoutMasks.SITE_ATTENTION_PROBS), dtype, -1, heads, seqLen, seqLen));
        }
        SDVariable y = store(sd.mmul(att, v).permute(0, 2, 1, 3).reshape(-1, dModel));
        return linear(y, "h." + layer + ".attn.c_proj");
    }

    /** [B*T, D] to [B, H, T, headDim]. */
    private SDVariable splitHeads(SDVariable x) {
        return x.reshape(-1, seqLen, cfg.nHead(), cfg.headDim()).permute(0, 2, 1, 3);
    }

    private SDVariable mlp(int layer, SDVariable h) {
        SDVariable f = linear(h, "h." + layer + ".mlp.c_fc");
        f = store("relu".equals(cfg.activation()) ? sd.nn.relu(f, 0.0) : geluTanh(f));
        return linear(f, "h." + layer + ".mlp.c_proj");
    }

    /**
     * GELU, tanh approximation (GPT-2, PyTorch's gelu(approximate='tanh')), written out because the backward of
     * M2.1's {@code sd.nn.preciseGelu} does not match its forward (relative error ~1e-3). Uses
     * 0.5 (1 + tanh(z)) = sigmoid(2z): x * sigmoid(x * (2c + 2c * 0.044715 x^2)), c = sqrt(2/pi).
     */
    private SDVariable geluTanh(SDVariable x) {
        double twoC = 2.0 * Math.sqrt(2.0 / Math.PI);
        SDVariable z = x.mul(x.mul(x).mul(twoC * 0.044715).add(twoC));
        return x.mul(sd.nn.sigmoid(z));
    }

    private SDVariable linear(SDVariable x, String prefix) {
        SDVariable y = sd.mmul(x, param(prefix + ".weight"));
        return store(cfg.bias() ? y.add(param(prefix + ".bias")) : y);
    }

    /**
     * LayerNorm over the last dimension with model.layer_norm_eps, written out as PyTorch's (SameDiff's fused
     * {@code sd.nn.layerNorm} has no epsilon).
     */
    private SDVariable layerNorm(SDVariable x, String prefix) {
        SDVariable centered = x.sub(x.mean(true, 1));
        SDVariable variance = centered.mul(centered).mean(true, 1);
        SDVariable y = centered.mul(sd.math.rsqrt(variance.add(cfg.layerNormEps())));
        y = y.mul(param(prefix + ".weight"));
        return store(cfg.bias() ? y.add(param(prefix + ".bias")) : y);
    }

    private SDVariable dropout(SDVariable x, String maskName) {
        return dropout ? x.mul(sd.placeHolder(maskName, dtype, -1, dModel)) : x;
    }

    private SDVariable param(String checkpointName) {
        return sd.getVariable(graphName(checkpointName));
    }
}
