package io.dtrain.model.samediff;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.DropoutMasks;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.PhaseClock;
import io.dtrain.model.Stage;
import org.nd4j.autodiff.samediff.api.OutAndGrad;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A {@link Stage} run by SameDiff ({@code model.engine: samediff}): the {@link GptGraph} of the stage, and on
 * stage 0 the embedding lookup outside the graph ({@link TokenEmbedding}). The graph holds copies of the
 * parameters (SameDiff copies what it is given). A forward pass keeps only the stage's input; the backward pass
 * recomputes the forward pass from it (activation checkpointing at the stage boundary), so a slot costs one
 * [B, T, D] tensor. With fp16 ({@link #setHalfPrecision}) the graph rounds what it stores to half precision and
 * takes the loss scale as a placeholder.
 */
public final class SameDiffStage implements Stage {
    private final ModelConfig cfg;
    private final ParamLayout layout;
    private final int stage;
    private final boolean first;
    private final boolean last;
    private final int firstBlock;
    private final int endBlock;
    private final DataType dtype;
    private final int seqLen;
    private final int dModel;
    private final boolean dropout;
    private final PhaseClock clock;
    private final TokenEmbedding embedding;
    private GptGraph graph;
    /** training.precision: fp16: the graph rounds its activations to half precision (see {@link GptGraph}). */
    private boolean half;
    private final BackwardStartListener backwardStart = new BackwardStartListener();
    /** What backward(slot) recomputes from: the stage input, the tokens (stage 0) and the dropout keys. */
    private final Map<Integer, Held> held = new HashMap<>();
    private final Map<Integer, Map<String, INDArray>> onesMasksByBatch = new HashMap<>();
    private DropoutKeys cachedMaskKeys;
    private Map<String, INDArray> cachedMasks;
    private INDArray gradInput;
    private boolean paramsSet;

    private record Held(INDArray xIn, int[][] inputs, DropoutKeys keys) {
    }

    public SameDiffStage(ModelConfig cfg, ParamLayout layout, int stage, int numStages, int firstBlock, int endBlock,
                         PhaseClock clock) {
        this(cfg, layout, stage, stage == 0, stage == numStages - 1, firstBlock, endBlock, clock);
    }

    /**
     * Blocks [firstBlock, endBlock) of pipeline stage {@code stage}, with the embedding when {@code first} and ln_f,
     * the head and the loss when {@code last} (a stage recomputed block by block is a chain of such parts).
     */
    public SameDiffStage(ModelConfig cfg, ParamLayout layout, int stage, boolean first, boolean last, int firstBlock,
                         int endBlock, PhaseClock clock) {
        this.cfg = cfg;
        this.layout = layout;
        this.stage = stage;
        this.first = first;
        this.last = last;
        this.firstBlock = firstBlock;
        this.endBlock = endBlock;
        this.dtype = cfg.isDouble() ? DataType.DOUBLE : DataType.FLOAT;
        this.seqLen = cfg.seqLen();
        this.dModel = cfg.dModel();
        this.dropout = cfg.dropout() > 0.0;
        this.clock = clock;
        this.embedding = first ? new TokenEmbedding(cfg, layout, dtype) : null;
        buildGraph();
    }

    private void buildGraph() {
        this.graph = new GptGraph(cfg, layout, first, last, firstBlock, endBlock, half);
        if (last) {
            graph.sd.setListeners(backwardStart);
        }
        createGradFunctionQuietly();
    }

    /**
     * fp16 mixed precision: rebuilds the graph so that it rounds every activation and activation gradient it stores
     * to half precision where the fused engine's emulation does, with fp32 arithmetic between; the caller hands
     * {@link #setParams} the fp16-rounded copy of the parameters and the loss scale as {@code gradScale}. Listeners
     * added before are dropped with the old graph.
     */
    public void setHalfPrecision(boolean half) {
        if (half && dtype != DataType.FLOAT) {
            throw new IllegalArgumentException("fp16 needs a float32 model");
        }
        if (half != this.half) {
            this.half = half;
            buildGraph();
            paramsSet = false;
        }
    }

    @Override
    public int index() {
        return stage;
    }

    @Override
    public boolean isFirst() {
        return first;
    }

    @Override
    public boolean isLast() {
        return last;
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
                graph.sd.createGradFunction();
            } finally {
                System.setOut(console);
            }
        }
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

        long disarm(long end) {
            armed = false;
            return firstBackwardOp == 0 ? end : firstBackwardOp;
        }

        @Override
        public boolean isActive(org.nd4j.autodiff.listeners.Operation operation) {
            return true;
        }

        @Override
        public void preOpExecution(org.nd4j.autodiff.samediff.SameDiff sd, org.nd4j.autodiff.listeners.At at,
                                   org.nd4j.autodiff.samediff.internal.SameDiffOp op,
                                   org.nd4j.linalg.api.ops.OpContext opContext) {
            if (armed && firstBackwardOp == 0 && op.getOp().opName().endsWith("_bp")) {
                firstBackwardOp = System.nanoTime();
            }
        }
    }

    /** Adds a listener to the stage's graph (e.g. per-op timing in benchmarks). */
    public void addListener(org.nd4j.autodiff.listeners.Listener listener) {
        graph.sd.addListeners(listener);
    }

    // ------------------------------------------------------------------ parameters

    @Override
    public void setParams(INDArray flatParams) {
        if (embedding != null) {
            embedding.setParams(flatParams);
        }
        for (String name : graph.ownedParams) {
            graph.sd.getVariable(GptGraph.graphName(name)).getArr().assign(layout.view(flatParams, name));
        }
        if (last && cfg.tieEmbeddings()) {
            graph.sd.getVariable(GptGraph.graphName(GptNames.WTE)).getArr().assign(layout.view(flatParams, GptNames.WTE));
        }
        paramsSet = true;
    }

    // ------------------------------------------------------------------ passes

    /** Stage 0: the embedding of the windows' inputs; later stages: xIn. */
    private INDArray input(int[][] windows, INDArray xIn) {
        if (!first) {
            return xIn;
        }
        long t0 = System.nanoTime();
        INDArray x = embedding.forward(inputs(windows));
        clock.addForward(System.nanoTime() - t0);
        return x;
    }

    private int[][] inputs(int[][] windows) {
        int[][] out = new int[windows.length][];
        for (int b = 0; b < windows.length; b++) {
            if (windows[b].length < seqLen) {
                throw new IllegalArgumentException("window " + b + " has " + windows[b].length + " tokens, need at least "
                        + seqLen);
            }
            checkTokens(windows[b], seqLen, "window " + b);
            out[b] = java.util.Arrays.copyOf(windows[b], seqLen);
        }
        return out;
    }

    private void checkTokens(int[] tokens, int upTo, String where) {
        for (int t = 0; t < upTo; t++) {
            if (tokens[t] < 0 || tokens[t] >= cfg.vocabSize()) {
                throw new IllegalArgumentException(where + " position " + t + ": token " + tokens[t]
                        + " is outside [0, model.vocab_size=" + cfg.vocabSize() + ")");
            }
        }
    }

    @Override
    public INDArray forward(int slot, int[][] windows, INDArray xIn, DropoutKeys keys) {
        requireNotLast("forward");
        INDArray x = input(windows, xIn);
        long t0 = System.nanoTime();
        Map<String, INDArray> ph = placeholders(x, keys);
        INDArray out = graph.sd.output(ph, GptGraph.X_OUT).get(GptGraph.X_OUT);
        clock.addForward(System.nanoTime() - t0);
        if (slot != -1) {
            held.put(slot, new Held(x, first ? inputs(windows) : null, keys));
        }
        return out.reshape(batchOf(x), seqLen, dModel);
    }

    @Override
    public INDArray backward(int slot, INDArray gradOut, INDArray flatGrads) {
        requireNotLast("backward");
        Held h = held.remove(slot);
        if (h == null) {
            throw new IllegalStateException("stage " + stage + ": no forward pass is held in slot " + slot);
        }
        long t0 = System.nanoTime();
        Map<String, INDArray> ph = placeholders(h.xIn(), h.keys());
        ph.put(GptGraph.G_OUT, flat2d(gradOut));
        Map<String, INDArray> grads = graph.sd.calculateGradients(ph, graph.gradVariables);
        addParamGrads(grads, 1.0, flatGrads);
        INDArray dx = grads.get(GptGraph.X_IN).reshape(batchOf(h.xIn()), seqLen, dModel);
        clock.addBackward(System.nanoTime() - t0);
        if (first) {
            long t1 = System.nanoTime();
            embedding.backward(h.inputs(), dx, flatGrads);
            clock.addBackward(System.nanoTime() - t1);
            return null;
        }
        return dx;
    }

    @Override
    public double loss(int[][] windows, INDArray xIn, DropoutKeys keys, double gradScale, INDArray flatGrads) {
        requireLast("loss");
        INDArray x = input(windows, xIn);
        long t0 = System.nanoTime();
        Map<String, INDArray> ph = placeholders(x, keys);
        ph.put(GptGraph.TARGETS, targetArray(windows, batchOf(x)));
        // the graph differentiates the sum over tokens (see GptGraph): scale to the mean, and by gradScale; fp16
        // scales inside the graph, before the gradients meet their first fp16 rounding
        double scale = gradScale / ((long) windows.length * seqLen);
        if (half) {
            ph.put(GptGraph.LOSS_SCALE, Nd4j.scalar(dtype, scale));
            scale = 1.0;
        }
        if (flatGrads == null) {
            gradInput = null;
            double loss = graph.sd.output(ph, GptGraph.LOSS).get(GptGraph.LOSS).getDouble(0);
            clock.addForward(System.nanoTime() - t0);
            return loss;
        }
        backwardStart.arm();
        OutAndGrad r = graph.sd.calculateGradientsAndOutputs(ph, List.of(GptGraph.LOSS), graph.gradVariables);
        long t1 = System.nanoTime();
        long tb = backwardStart.disarm(t1);
        clock.addForward(tb - t0);
        clock.addBackward(t1 - tb);
        Map<String, INDArray> grads = r.getGradients();
        addParamGrads(grads, scale, flatGrads);
        if (cfg.tieEmbeddings()) {
            INDArray g = grads.get(GptGraph.graphName(GptNames.WTE));
            layout.view(flatGrads, GptNames.WTE).addi(scale == 1.0 ? g : g.muli(scale));
        }
        INDArray dx = grads.get(GptGraph.X_IN);
        dx = (scale == 1.0 ? dx : dx.muli(scale)).reshape(batchOf(x), seqLen, dModel);
        if (first) {
            long t2 = System.nanoTime();
            embedding.backward(inputs(windows), dx, flatGrads);
            clock.addBackward(System.nanoTime() - t2);
            gradInput = null;
        } else {
            gradInput = dx;
        }
        return r.getOutputs().get(GptGraph.LOSS).getDouble(0);
    }

    @Override
    public INDArray gradInput() {
        return gradInput;
    }

    @Override
    public INDArray logits(int[][] windows, INDArray xIn) {
        requireLast("logits");
        INDArray x = input(windows, xIn);
        Map<String, INDArray> ph = placeholders(x, null);
        return graph.sd.output(ph, GptGraph.LOGITS).get(GptGraph.LOGITS).reshape(batchOf(x), seqLen, cfg.vocabSize());
    }

    private void addParamGrads(Map<String, INDArray> grads, double scale, INDArray flatGrads) {
        for (String name : graph.ownedParams) {
            INDArray g = grads.get(GptGraph.graphName(name));
            if (g == null) {
                throw new IllegalStateException("SameDiff returned no gradient for " + name);
            }
            layout.view(flatGrads, name).addi(scale == 1.0 ? g : g.muli(scale));
        }
    }

    private Map<String, INDArray> placeholders(INDArray xIn, DropoutKeys keys) {
        if (!paramsSet) {
            throw new IllegalStateException("stage " + stage + ": call setParams before running the graph");
        }
        int batch = batchOf(xIn);
        Map<String, INDArray> ph = new HashMap<>();
        ph.put(GptGraph.X_IN, flat2d(xIn));
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
            m.put(GptGraph.MASK_EMBEDDING, DropoutMasks.mask(keys, p, DropoutMasks.EMBEDDING_LAYER,
                    DropoutMasks.SITE_EMBEDDING, residual, dtype, (long) batch * seqLen, dModel));
        }
        for (int layer = firstBlock; layer < endBlock; layer++) {
            m.put(GptGraph.maskName(layer, DropoutMasks.SITE_ATTENTION_PROBS), DropoutMasks.mask(keys, p, layer,
                    DropoutMasks.SITE_ATTENTION_PROBS, probs, dtype, batch, cfg.nHead(), seqLen, seqLen));
            for (int site : new int[] {DropoutMasks.SITE_ATTENTION_RESIDUAL, DropoutMasks.SITE_MLP_RESIDUAL}) {
                m.put(GptGraph.maskName(layer, site), DropoutMasks.mask(keys, p, layer, site, residual, dtype,
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
                m.put(GptGraph.MASK_EMBEDDING, Nd4j.ones(dtype, (long) b * seqLen, dModel));
            }
            for (int layer = firstBlock; layer < endBlock; layer++) {
                m.put(GptGraph.maskName(layer, DropoutMasks.SITE_ATTENTION_PROBS), Nd4j.ones(dtype, b, cfg.nHead(), seqLen, seqLen));
                m.put(GptGraph.maskName(layer, DropoutMasks.SITE_ATTENTION_RESIDUAL), Nd4j.ones(dtype, (long) b * seqLen, dModel));
                m.put(GptGraph.maskName(layer, DropoutMasks.SITE_MLP_RESIDUAL), Nd4j.ones(dtype, (long) b * seqLen, dModel));
            }
            return m;
        });
    }

    private int batchOf(INDArray x) {
        if (x == null) {
            throw new IllegalArgumentException("stage " + stage + " needs the previous stage's activations");
        }
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

    private INDArray targetArray(int[][] windows, int batch) {
        if (windows.length != batch) {
            throw new IllegalArgumentException("stage " + stage + ": " + windows.length + " windows for a batch of " + batch);
        }
        int[] flat = new int[batch * seqLen];
        for (int b = 0; b < batch; b++) {
            if (windows[b].length != seqLen + 1) {
                throw new IllegalArgumentException("window " + b + " has " + windows[b].length + " tokens, expected"
                        + " model.seq_len + 1 = " + (seqLen + 1));
            }
            for (int t = 1; t <= seqLen; t++) {
                int tok = windows[b][t];
                if (tok < 0 || tok >= cfg.vocabSize()) {
                    throw new IllegalArgumentException("window " + b + " position " + t + ": token " + tok
                            + " is outside [0, model.vocab_size=" + cfg.vocabSize() + ")");
                }
                flat[b * seqLen + t - 1] = tok;
            }
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
            throw new IllegalStateException(what + " runs on non-last stages only; the last stage uses loss");
        }
    }

    @Override
    public void close() {
        // SameDiff M2.1 has no close(); dropping the graph lets its arrays be collected.
        graph = null;
        cachedMasks = null;
        onesMasksByBatch.clear();
        held.clear();
    }
}
