package io.dtrain.model;

import io.dtrain.config.ModelConfig;
import org.nd4j.autodiff.samediff.SDVariable;
import org.nd4j.autodiff.samediff.SameDiff;
import org.nd4j.autodiff.samediff.api.OutAndGrad;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One pipeline stage of the GPT as a SameDiff graph: blocks [firstBlock, endBlock); stage 0 also applies the
 * embedding dropout (the embedding lookup itself runs outside the graph, see {@link TokenEmbedding}); the last
 * stage also ln_f (pre-norm only), the LM head and the mean cross-entropy.
 *
 * <p>The graph works on activations flattened to [B*T, D]; the public methods take and return [B, T, D] (or
 * [B*T, D]) arrays. The graph is built once; the batch size may vary between calls, T is always seq_len.
 *
 * <p>Placeholders: {@code x_in} [B*T, D]; dropout masks (only when dropout > 0); {@code g_out} [B*T, D] on
 * non-last stages, whose loss {@code sum(x_out * g_out)} makes {@code calculateGradients} return the
 * vector-Jacobian product; {@code targets} int [B*T] on the last stage.
 */
public final class StageGraph implements AutoCloseable {
    private static final String X_IN = "x_in";
    private static final String X_IN_ANCHOR = "x_in_anchor";
    private static final String X_OUT = "x_out";
    private static final String G_OUT = "g_out";
    private static final String BACKWARD_LOSS = "backward_loss";
    private static final String TARGETS = "targets";
    private static final String LOSS = "loss";
    private static final String LOSS_SUM = "loss_sum";
    private static final String LOGITS = "logits";
    private static final String MASK_EMBEDDING = "mask_emb";

    private final ModelConfig cfg;
    private final ParamLayout layout;
    private final int stage;
    private final int firstBlock;
    private final int endBlock;
    private final boolean first;
    private final boolean last;
    private final boolean tiedHead;
    private final boolean dropout;
    private final DataType dtype;
    private final int seqLen;
    private final int dModel;
    private SameDiff sd;
    private final PhaseClock clock;
    private final BackwardStartListener backwardStart = new BackwardStartListener();
    /** Checkpoint names of the parameters this stage owns and its graph uses (not wte/wpe: they are outside). */
    private final List<String> ownedParams = new ArrayList<>();
    /** Variables to differentiate: owned parameters, the tied head replica, x_in. */
    private final List<String> gradVariables = new ArrayList<>();
    private final Map<Integer, Map<String, INDArray>> onesMasksByBatch = new HashMap<>();
    private DropoutKeys cachedMaskKeys;
    private Map<String, INDArray> cachedMasks;
    private boolean paramsSet;

    StageGraph(ModelConfig cfg, ParamLayout layout, int stage, int numStages, int firstBlock, int endBlock,
               PhaseClock clock) {
        this.clock = clock;
        this.cfg = cfg;
        this.layout = layout;
        this.stage = stage;
        this.firstBlock = firstBlock;
        this.endBlock = endBlock;
        this.first = stage == 0;
        this.last = stage == numStages - 1;
        this.tiedHead = last && cfg.tieEmbeddings();
        this.dropout = cfg.dropout() > 0.0;
        this.dtype = cfg.isDouble() ? DataType.DOUBLE : DataType.FLOAT;
        this.seqLen = cfg.seqLen();
        this.dModel = cfg.dModel();
        for (ParamSpec s : layout.stageSpecs(stage)) {
            if (!s.name().equals(GptNames.WTE) && !s.name().equals(GptNames.WPE)) {
                ownedParams.add(s.name());
            }
        }
        build();
    }

    public int stageIndex() {
        return stage;
    }

    public int firstBlock() {
        return firstBlock;
    }

    public int endBlock() {
        return endBlock;
    }

    public boolean isFirst() {
        return first;
    }

    public boolean isLast() {
        return last;
    }

    /** Checkpoint names of the parameters whose gradients {@link #backward}/{@link #lossAndBackward} return. */
    public List<String> ownedParams() {
        return Collections.unmodifiableList(ownedParams);
    }

    // ------------------------------------------------------------------ graph construction

    private void build() {
        sd = SameDiff.create();
        for (String name : ownedParams) {
            ParamSpec s = layout.spec(name);
            sd.var(GptNames.graphName(name), Nd4j.zeros(dtype, s.shape()));
        }
        if (tiedHead) {
            sd.var(GptNames.graphName(GptNames.WTE), Nd4j.zeros(dtype, cfg.vocabSize(), dModel));
        }
        for (String name : ownedParams) {
            gradVariables.add(GptNames.graphName(name));
        }
        if (tiedHead) {
            gradVariables.add(GptNames.graphName(GptNames.WTE));
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
        SDVariable causalMask = sd.constant("causal_mask", causalMask());
        for (int layer = firstBlock; layer < endBlock; layer++) {
            x = block(layer, x, causalMask);
        }
        if (!last) {
            SDVariable out = x.rename(X_OUT);
            SDVariable gOut = sd.placeHolder(G_OUT, dtype, -1, dModel);
            sd.sum(BACKWARD_LOSS, out.mul(gOut));
            sd.setLossVariables(BACKWARD_LOSS);
            createGradFunctionQuietly();
            return;
        }
        if (cfg.preNorm()) {
            x = layerNorm(x, "ln_f");
        }
        SDVariable logits = tiedHead
                ? sd.mmul(LOGITS, x, param(GptNames.WTE), false, true, false)
                : sd.mmul(LOGITS, x, param(GptNames.LM_HEAD_WEIGHT));
        SDVariable targets = sd.placeHolder(TARGETS, DataType.INT32, -1);
        SDVariable perToken = sd.loss.sparseSoftmaxCrossEntropy(logits, targets);
        sd.mean(LOSS, perToken);
        // M2.1's sparse cross-entropy backward ignores its upstream gradient (it always returns softmax - onehot),
        // so differentiating mean() would give N times the gradient. Differentiate the sum, whose upstream
        // gradient is exactly 1 per token, and scale the gradients by 1/N afterwards (see lossAndBackward).
        sd.sum(LOSS_SUM, perToken);
        sd.setLossVariables(LOSS_SUM);
        sd.setListeners(backwardStart);
        createGradFunctionQuietly();
    }

    /**
     * Marks when the first backward op of a fused forward + backward call starts (ops of the gradient graph are
     * named {@code *_bp}; the first one is the loss's), so the call's time can be split into forward and backward.
     */
    private static final class BackwardStartListener extends org.nd4j.autodiff.listeners.BaseListener {
        private boolean armed;
        private long firstBackwardOp;

        void arm() {
            armed = true;
            firstBackwardOp = 0;
        }

        /** The start of the first backward op, or {@code end} if none was seen. */
        long disarm(long end) {
            armed = false;
            return firstBackwardOp == 0 ? end : firstBackwardOp;
        }

        @Override
        public boolean isActive(org.nd4j.autodiff.listeners.Operation operation) {
            return true;
        }

        @Override
        public void preOpExecution(SameDiff sd, org.nd4j.autodiff.listeners.At at,
                                   org.nd4j.autodiff.samediff.internal.SameDiffOp op,
                                   org.nd4j.linalg.api.ops.OpContext opContext) {
            if (armed && firstBackwardOp == 0 && op.getOp().opName().endsWith("_bp")) {
                firstBackwardOp = System.nanoTime();
            }
        }
    }

    /**
     * SameDiff M2.1 prints an "Added differentiated op" line per op to System.out while it builds the gradient
     * graph. Build it once here, with System.out muted, so that a run's console shows only dtrain's own lines.
     */
    private void createGradFunctionQuietly() {
        java.io.PrintStream console = System.out;
        synchronized (System.class) {
            System.setOut(new java.io.PrintStream(java.io.OutputStream.nullOutputStream()));
            try {
                sd.createGradFunction();
            } finally {
                System.setOut(console);
            }
        }
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
            x = x.add(dropout(a, maskName(layer, DropoutMasks.SITE_ATTENTION_RESIDUAL)));
            SDVariable m = mlp(layer, layerNorm(x, p + "ln_2"));
            return x.add(dropout(m, maskName(layer, DropoutMasks.SITE_MLP_RESIDUAL)));
        }
        SDVariable a = attention(layer, x, causalMask);
        x = layerNorm(x.add(dropout(a, maskName(layer, DropoutMasks.SITE_ATTENTION_RESIDUAL))), p + "ln_1");
        SDVariable m = mlp(layer, x);
        return layerNorm(x.add(dropout(m, maskName(layer, DropoutMasks.SITE_MLP_RESIDUAL))), p + "ln_2");
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
        SDVariable att = sd.mmul(q, k, false, true, false).add(causalMask);
        att = sd.nn.softmax(att, 3);
        if (dropout) {
            att = att.mul(sd.placeHolder(maskName(layer, DropoutMasks.SITE_ATTENTION_PROBS), dtype, -1, heads, seqLen, seqLen));
        }
        SDVariable y = sd.mmul(att, v).permute(0, 2, 1, 3).reshape(-1, dModel);
        return linear(y, "h." + layer + ".attn.c_proj");
    }

    /** [B*T, D] to [B, H, T, headDim]. */
    private SDVariable splitHeads(SDVariable x) {
        return x.reshape(-1, seqLen, cfg.nHead(), cfg.headDim()).permute(0, 2, 1, 3);
    }

    private SDVariable mlp(int layer, SDVariable h) {
        SDVariable f = linear(h, "h." + layer + ".mlp.c_fc");
        f = "relu".equals(cfg.activation()) ? sd.nn.relu(f, 0.0) : geluTanh(f);
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
        return cfg.bias() ? y.add(param(prefix + ".bias")) : y;
    }

    /**
     * LayerNorm over the last dimension. SameDiff's fused {@code sd.nn.layerNorm} (libnd4j standardize) divides
     * by the bare standard deviation, with no epsilon: it is used only when model.layer_norm_eps is 0; otherwise
     * the LayerNorm is written out with the epsilon, as PyTorch's, so checkpoints transfer.
     */
    private SDVariable layerNorm(SDVariable x, String prefix) {
        if (cfg.layerNormEps() == 0.0) {
            return cfg.bias()
                    ? sd.nn.layerNorm(x, param(prefix + ".weight"), param(prefix + ".bias"), false, 1)
                    : sd.nn.layerNorm(x, param(prefix + ".weight"), false, 1);
        }
        SDVariable centered = x.sub(x.mean(true, 1));
        SDVariable variance = centered.mul(centered).mean(true, 1);
        SDVariable y = centered.mul(sd.math.rsqrt(variance.add(cfg.layerNormEps())));
        y = y.mul(param(prefix + ".weight"));
        return cfg.bias() ? y.add(param(prefix + ".bias")) : y;
    }

    private SDVariable dropout(SDVariable x, String maskName) {
        return dropout ? x.mul(sd.placeHolder(maskName, dtype, -1, dModel)) : x;
    }

    private SDVariable param(String checkpointName) {
        return sd.getVariable(GptNames.graphName(checkpointName));
    }

    private static String maskName(int layer, int site) {
        return "mask_" + layer + "_" + site;
    }

    // ------------------------------------------------------------------ parameters

    /** Copies this stage's parameters (and, with a tied head, wte) from a flat buffer laid out by the model. */
    public void setParams(INDArray flatParams) {
        for (String name : ownedParams) {
            sd.getVariable(GptNames.graphName(name)).getArr().assign(layout.view(flatParams, name));
        }
        if (tiedHead) {
            setTiedHeadWeight(layout.view(flatParams, GptNames.WTE));
        }
        paramsSet = true;
    }

    /**
     * Sets the tied LM head's replica of wte [V, D]. {@link #setParams} does it from the flat buffer; a pipeline
     * stage in another process whose flat buffer lacks wte calls this with its own replica instead.
     */
    public void setTiedHeadWeight(INDArray wte) {
        if (!tiedHead) {
            throw new IllegalStateException("stage " + stage + " has no tied LM head");
        }
        sd.getVariable(GptNames.graphName(GptNames.WTE)).getArr().assign(wte);
    }

    // ------------------------------------------------------------------ execution

    /** Non-last stages: x_out [B, T, D] of x_in [B, T, D]; {@code keys} null means no dropout. */
    public INDArray forward(INDArray xIn, DropoutKeys keys) {
        requireNotLast("forward");
        long t0 = System.nanoTime();
        Map<String, INDArray> ph = placeholders(xIn, keys);
        INDArray out = sd.output(ph, X_OUT).get(X_OUT);
        clock.addForward(System.nanoTime() - t0);
        return out.reshape(batchOf(xIn), seqLen, dModel);
    }

    /**
     * Non-last stages: recomputes the forward pass and returns dL/dx_in and the parameter gradients, given
     * gOut = dL/dx_out [B, T, D]. Pass the same keys as to {@link #forward}.
     */
    public StageBackward backward(INDArray xIn, INDArray gOut, DropoutKeys keys) {
        requireNotLast("backward");
        long t0 = System.nanoTime();
        Map<String, INDArray> ph = placeholders(xIn, keys);
        ph.put(G_OUT, flat2d(gOut));
        Map<String, INDArray> grads = sd.calculateGradients(ph, gradVariables);
        clock.addBackward(System.nanoTime() - t0);
        return new StageBackward(grads.get(X_IN).reshape(batchOf(xIn), seqLen, dModel), paramGrads(grads));
    }

    /** Last stage: mean cross-entropy of targets [B][T], dL/dx_in and the parameter gradients, in one pass. */
    public LastStageResult lossAndBackward(INDArray xIn, int[][] targets, DropoutKeys keys) {
        requireLast("lossAndBackward");
        long t0 = System.nanoTime();
        Map<String, INDArray> ph = placeholders(xIn, keys);
        ph.put(TARGETS, targetArray(targets, batchOf(xIn)));
        backwardStart.arm();
        OutAndGrad r = sd.calculateGradientsAndOutputs(ph, List.of(LOSS), gradVariables);
        long t1 = System.nanoTime();
        long tb = backwardStart.disarm(t1);
        clock.addForward(tb - t0);
        clock.addBackward(t1 - tb);
        Map<String, INDArray> grads = r.getGradients();
        double perToken = 1.0 / ((long) targets.length * seqLen);
        for (INDArray g : grads.values()) {
            g.muli(perToken);
        }
        INDArray headGrad = tiedHead ? grads.get(GptNames.graphName(GptNames.WTE)) : null;
        return new LastStageResult(r.getOutputs().get(LOSS).getDouble(0),
                grads.get(X_IN).reshape(batchOf(xIn), seqLen, dModel), paramGrads(grads), headGrad);
    }

    /** Last stage: mean cross-entropy without gradients; {@code keys} null means no dropout. */
    public double loss(INDArray xIn, int[][] targets, DropoutKeys keys) {
        requireLast("loss");
        Map<String, INDArray> ph = placeholders(xIn, keys);
        ph.put(TARGETS, targetArray(targets, batchOf(xIn)));
        return sd.output(ph, LOSS).get(LOSS).getDouble(0);
    }

    /** Last stage: logits [B, T, V] without dropout. */
    public INDArray logits(INDArray xIn) {
        requireLast("logits");
        Map<String, INDArray> ph = placeholders(xIn, null);
        return sd.output(ph, LOGITS).get(LOGITS).reshape(batchOf(xIn), seqLen, cfg.vocabSize());
    }

    private Map<String, INDArray> paramGrads(Map<String, INDArray> grads) {
        Map<String, INDArray> out = new LinkedHashMap<>();
        for (String name : ownedParams) {
            INDArray g = grads.get(GptNames.graphName(name));
            if (g == null) {
                throw new IllegalStateException("SameDiff returned no gradient for " + name);
            }
            out.put(name, g);
        }
        return out;
    }

    private Map<String, INDArray> placeholders(INDArray xIn, DropoutKeys keys) {
        if (!paramsSet) {
            throw new IllegalStateException("stage " + stage + ": call setParams before running the graph");
        }
        int batch = batchOf(xIn);
        Map<String, INDArray> ph = new HashMap<>();
        ph.put(X_IN, flat2d(xIn));
        if (dropout) {
            ph.putAll(keys == null ? onesMasks(batch) : masks(keys, batch));
        }
        return ph;
    }

    private Map<String, INDArray> masks(DropoutKeys keys, int batch) {
        if (keys.batchSize() != batch) {
            throw new IllegalArgumentException("dropout keys name " + keys.batchSize() + " samples but the batch has " + batch);
        }
        // forward and the later backward of a micro-batch need the same masks: keep the last set.
        if (keys == cachedMaskKeys) {
            return cachedMasks;
        }
        double p = cfg.dropout();
        long residual = (long) seqLen * dModel;
        long probs = (long) cfg.nHead() * seqLen * seqLen;
        Map<String, INDArray> m = new HashMap<>();
        if (first) {
            m.put(MASK_EMBEDDING, DropoutMasks.mask(keys, p, DropoutMasks.EMBEDDING_LAYER, DropoutMasks.SITE_EMBEDDING,
                    residual, dtype, (long) batch * seqLen, dModel));
        }
        for (int layer = firstBlock; layer < endBlock; layer++) {
            m.put(maskName(layer, DropoutMasks.SITE_ATTENTION_PROBS), DropoutMasks.mask(keys, p, layer,
                    DropoutMasks.SITE_ATTENTION_PROBS, probs, dtype, batch, cfg.nHead(), seqLen, seqLen));
            for (int site : new int[] {DropoutMasks.SITE_ATTENTION_RESIDUAL, DropoutMasks.SITE_MLP_RESIDUAL}) {
                m.put(maskName(layer, site), DropoutMasks.mask(keys, p, layer, site, residual, dtype,
                        (long) batch * seqLen, dModel));
            }
        }
        cachedMaskKeys = keys;
        cachedMasks = m;
        return m;
    }

    private Map<String, INDArray> onesMasks(int batch) {
        return onesMasksByBatch.computeIfAbsent(batch, b -> {
            Map<String, INDArray> m = new HashMap<>();
            if (first) {
                m.put(MASK_EMBEDDING, Nd4j.ones(dtype, (long) b * seqLen, dModel));
            }
            for (int layer = firstBlock; layer < endBlock; layer++) {
                m.put(maskName(layer, DropoutMasks.SITE_ATTENTION_PROBS), Nd4j.ones(dtype, b, cfg.nHead(), seqLen, seqLen));
                m.put(maskName(layer, DropoutMasks.SITE_ATTENTION_RESIDUAL), Nd4j.ones(dtype, (long) b * seqLen, dModel));
                m.put(maskName(layer, DropoutMasks.SITE_MLP_RESIDUAL), Nd4j.ones(dtype, (long) b * seqLen, dModel));
            }
            return m;
        });
    }

    private int batchOf(INDArray x) {
        if (x.rank() == 3 && x.size(1) == seqLen && x.size(2) == dModel) {
            return (int) x.size(0);
        }
        if (x.rank() == 2 && x.size(1) == dModel && x.size(0) % seqLen == 0) {
            return (int) (x.size(0) / seqLen);
        }
        throw new IllegalArgumentException("stage " + stage + ": expected activations [B, " + seqLen + ", " + dModel
                + "] or [B*" + seqLen + ", " + dModel + "], got " + java.util.Arrays.toString(x.shape()));
    }

    private INDArray flat2d(INDArray x) {
        if (x.dataType() != dtype) {
            throw new IllegalArgumentException("stage " + stage + ": activations are " + x.dataType() + ", the model is " + dtype);
        }
        return x.reshape('c', x.length() / dModel, dModel);
    }

    private INDArray targetArray(int[][] targets, int batch) {
        if (targets.length != batch) {
            throw new IllegalArgumentException("stage " + stage + ": " + targets.length + " target rows for a batch of " + batch);
        }
        int[] flat = new int[batch * seqLen];
        for (int b = 0; b < batch; b++) {
            if (targets[b].length != seqLen) {
                throw new IllegalArgumentException("target row " + b + " has " + targets[b].length + " tokens, expected seq_len " + seqLen);
            }
            System.arraycopy(targets[b], 0, flat, b * seqLen, seqLen);
        }
        return Nd4j.createFromArray(flat);
    }

    private void requireLast(String what) {
        if (!last) {
            throw new IllegalStateException(what + " runs on the last stage only, this is stage " + stage);
        }
    }

    private void requireNotLast(String what) {
        if (last) {
            throw new IllegalStateException(what + " runs on non-last stages only; the last stage uses lossAndBackward");
        }
    }

    @Override
    public void close() {
        // SameDiff M2.1 has no close(); dropping the graph lets its arrays be collected.
        sd = null;
        cachedMasks = null;
        onesMasksByBatch.clear();
    }
}
