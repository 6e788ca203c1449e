package io.dtrain.model;

import io.dtrain.compute.ComputeThreads;
import io.dtrain.config.ModelConfig;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import io.dtrain.model.fused.FusedStage;
import io.dtrain.model.fused.HalfRounding;
import io.dtrain.model.fused.KvCacheDecoder;
import io.dtrain.model.samediff.SameDiffStage;

import java.util.Arrays;

/**
 * A GPT decoder (nanoGPT's model.py semantics) as a sequence of {@link Stage}s that one process runs in order, or
 * one pipeline stage of it ({@link #forStage}). Which engine computes the stages is {@code model.engine}
 * ({@link FusedStage} on the CPU backend by default, {@link SameDiffStage} as the reference and the CUDA path).
 *
 * <p>Pre-norm (GPT-2): x + attn(ln_1(x)), x + mlp(ln_2(x)), final ln_f. Post-norm: x = ln_1(x + attn(x)),
 * x = ln_2(x + mlp(x)), and no ln_f (the last block's output is already normalised).
 *
 * <p>The caller owns the flat parameter and gradient buffers (laid out by {@link #layout()}); {@link #setParams}
 * hands the parameters to the stages once per optimizer step, and the stages ADD gradients into the caller's
 * gradient buffer.
 */
public final class GptModel implements AutoCloseable {
    private final ModelConfig cfg;
    private final int[] blocksPerStage;
    private final ParamLayout layout;
    private final DataType dtype;
    private final String engine;
    private final Stage[] stages;
    private final PhaseClock clock = new PhaseClock();
    /** The flat parameters last handed to the stages. */
    private INDArray params;
    /** What the training loss is multiplied by before its backward pass (fp16's dynamic loss scale; else 1). */
    private double lossScale = 1.0;
    /** fp16: the stages compute with this fp16-rounded copy of the parameters (null in fp32). */
    private INDArray halfParams;

    /** -1 when this process holds every stage, else the one pipeline stage it holds. */
    private final int onlyStage;

    public GptModel(ModelConfig cfg, int[] blocksPerStage) {
        this(cfg, blocksPerStage, -1, false);
    }

    /**
     * @param recompute {@code training.recompute: blocks}: keep only each block's input per in-flight micro-batch
     *                  and recompute the block's forward pass just before its backward pass
     */
    public GptModel(ModelConfig cfg, int[] blocksPerStage, boolean recompute) {
        this(cfg, blocksPerStage, -1, recompute);
    }

    private GptModel(ModelConfig cfg, int[] blocksPerStage, int onlyStage, boolean recompute) {
        validate(cfg, blocksPerStage);
        this.cfg = cfg;
        this.blocksPerStage = blocksPerStage.clone();
        this.onlyStage = onlyStage;
        this.layout = onlyStage < 0 ? GptNames.layout(cfg, blocksPerStage) : GptNames.stageLayout(cfg, blocksPerStage, onlyStage);
        this.dtype = cfg.isDouble() ? DataType.DOUBLE : DataType.FLOAT;
        this.engine = cfg.resolvedEngine();
        this.stages = new Stage[blocksPerStage.length];
        int block = 0;
        for (int s = 0; s < stages.length; s++) {
            if (onlyStage < 0 || s == onlyStage) {
                int end = block + blocksPerStage[s];
                stages[s] = "fused".equals(engine)
                        ? new FusedStage(cfg, layout, s, stages.length, block, end, recompute, ComputeThreads.shared(), clock)
                        : recompute ? blockByBlock(s, block, end) : new SameDiffStage(cfg, layout, s, stages.length, block, end, clock);
            }
            block += blocksPerStage[s];
        }
    }

    /** SameDiff recomputes a part's forward in its backward: one part per block keeps only the block inputs. */
    private Stage blockByBlock(int s, int firstBlock, int endBlock) {
        Stage[] parts = new Stage[endBlock - firstBlock];
        for (int l = firstBlock; l < endBlock; l++) {
            boolean firstPart = s == 0 && l == firstBlock;
            boolean lastPart = s == stages.length - 1 && l == endBlock - 1;
            parts[l - firstBlock] = new SameDiffStage(cfg, layout, s, firstPart, lastPart, l, l + 1, clock);
        }
        return new StageChain(s, parts);
    }

    /**
     * One pipeline stage of a model split as {@code blocksPerStage}, as a stage's process holds it: only that
     * stage's graph (and the embedding on stage 0), and flat buffers of only its parameters
     * ({@link GptNames#stageLayout}). Run it with a pipeline executor; the whole-model methods
     * (forwardBackward, loss, logits) need every stage and refuse.
     */
    public static GptModel forStage(ModelConfig cfg, int[] blocksPerStage, int stage) {
        return forStage(cfg, blocksPerStage, stage, false);
    }

    /** As {@link #forStage(ModelConfig, int[], int)}, with block-level recomputation when {@code recompute}. */
    public static GptModel forStage(ModelConfig cfg, int[] blocksPerStage, int stage, boolean recompute) {
        if (stage < 0 || stage >= blocksPerStage.length) {
            throw new IllegalArgumentException("stage " + stage + " outside 0.." + (blocksPerStage.length - 1));
        }
        return new GptModel(cfg, blocksPerStage, stage, recompute);
    }

    private void requireWhole(String what) {
        if (onlyStage >= 0) {
            throw new IllegalStateException(what + " needs the whole model, but this process holds only pipeline stage "
                    + onlyStage + " of " + stages.length);
        }
    }

    /** One stage holding every block. */
    public GptModel(ModelConfig cfg) {
        this(cfg, new int[] {cfg.nLayer()});
    }

    /** Blocks split as evenly as possible, the earlier stages taking the remainder. */
    public static int[] balancedPartition(ModelConfig cfg, int stages) {
        if (stages < 1 || stages > cfg.nLayer()) {
            throw new IllegalArgumentException("cannot split model.n_layer=" + cfg.nLayer() + " blocks into " + stages
                    + " pipeline stages: use between 1 and n_layer stages");
        }
        int[] out = new int[stages];
        for (int s = 0; s < stages; s++) {
            out[s] = cfg.nLayer() / stages + (s < cfg.nLayer() % stages ? 1 : 0);
        }
        return out;
    }

    private static void validate(ModelConfig cfg, int[] blocksPerStage) {
        require(cfg.vocabSize() > 0, "model.vocab_size must be > 0, got " + cfg.vocabSize());
        require(cfg.seqLen() > 0, "model.seq_len must be > 0, got " + cfg.seqLen());
        require(cfg.nLayer() > 0, "model.n_layer must be > 0, got " + cfg.nLayer());
        require(cfg.nHead() > 0 && cfg.dModel() > 0 && cfg.dModel() % cfg.nHead() == 0,
                "model.d_model (" + cfg.dModel() + ") must be a positive multiple of model.n_head (" + cfg.nHead() + ")");
        require(cfg.ffWidth() > 0, "model.d_ff must be >= 0 (0 means 4 * d_model), got " + cfg.dFf());
        require("pre".equals(cfg.norm()) || "post".equals(cfg.norm()), "model.norm must be pre or post, got " + cfg.norm());
        require("gelu".equals(cfg.activation()) || "relu".equals(cfg.activation()),
                "model.activation must be gelu or relu, got " + cfg.activation());
        require(cfg.dropout() >= 0.0 && cfg.dropout() < 1.0, "model.dropout must be in [0, 1), got " + cfg.dropout());
        require("float32".equals(cfg.dtype()) || "float64".equals(cfg.dtype()),
                "model.dtype must be float32 or float64, got " + cfg.dtype());
        require(cfg.layerNormEps() >= 0.0, "model.layer_norm_eps must be >= 0, got " + cfg.layerNormEps());
        require("auto".equals(cfg.engine()) || "fused".equals(cfg.engine()) || "samediff".equals(cfg.engine()),
                "model.engine must be auto, fused or samediff, got " + cfg.engine());
        require(!"fused".equals(cfg.engine()) || "fused".equals(new ModelConfig(cfg.vocabSize(), cfg.seqLen(),
                        cfg.dModel(), cfg.nLayer(), cfg.nHead(), cfg.dFf(), cfg.norm(), cfg.activation(), cfg.dropout(),
                        cfg.tieEmbeddings(), cfg.bias(), cfg.initStd(), cfg.layerNormEps(), cfg.dtype(), "auto")
                        .resolvedEngine()),
                "model.engine: fused computes in host memory and runs on ND4J's CPU backend only; this build uses "
                        + Nd4j.getBackend().getClass().getSimpleName() + ": use model.engine: auto or samediff");
        require(blocksPerStage.length >= 1, "need at least one stage");
        int sum = 0;
        for (int b : blocksPerStage) {
            require(b >= 1, "every pipeline stage needs at least one block, got " + Arrays.toString(blocksPerStage));
            sum += b;
        }
        require(sum == cfg.nLayer(), "blocks per stage " + Arrays.toString(blocksPerStage) + " sum to " + sum
                + ", but model.n_layer is " + cfg.nLayer());
    }

    private static void require(boolean ok, String message) {
        if (!ok) {
            throw new IllegalArgumentException(message);
        }
    }

    /** Forward/backward time since its last reset (the trainer resets it every step). */
    public PhaseClock phaseClock() {
        return clock;
    }

    public ModelConfig config() {
        return cfg;
    }

    public ParamLayout layout() {
        return layout;
    }

    /** "fused" or "samediff": the engine computing the stages. */
    public String engine() {
        return engine;
    }

    public int numStages() {
        return stages.length;
    }

    public int[] blocksPerStage() {
        return blocksPerStage.clone();
    }

    public DataType dataType() {
        return dtype;
    }

    /** Stage {@code s}; in a pipeline process only its own stage exists. */
    public Stage stage(int s) {
        if (stages[s] == null) {
            throw new IllegalStateException("this process holds pipeline stage " + onlyStage + ", not stage " + s);
        }
        return stages[s];
    }

    /** Zeros, length layout().size(), model dtype. */
    public INDArray newFlatBuffer() {
        return Nd4j.zeros(dtype, layout.size());
    }

    public void initParams(INDArray flatParams, long seed) {
        checkFlat(flatParams, "parameter");
        ParamInit.init(cfg, layout, flatParams, seed);
    }

    /**
     * fp16 mixed precision (either engine): the stages compute with fp16 copies of the parameters, store their
     * activations and activation gradients rounded to fp16 and accumulate GEMMs in fp32; the flat buffers stay fp32.
     */
    public void setHalfPrecision(boolean half) {
        halfParams = half ? Nd4j.create(DataType.FLOAT, layout.size()) : null;
        for (Stage s : stages) {
            if (s != null) {
                s.setHalfPrecision(half);
            }
        }
    }

    /** Multiplies the training loss by {@code scale} before its backward pass: the gradients are {@code scale} x dL/dw. */
    public void setLossScale(double scale) {
        this.lossScale = scale;
    }

    public double lossScale() {
        return lossScale;
    }

    /** Hands the flat parameters to every stage (once per optimizer step). */
    public void setParams(INDArray flatParams) {
        checkFlat(flatParams, "parameter");
        INDArray computed = flatParams;
        if (halfParams != null) {
            HalfRounding.roundInto(flatParams, halfParams);   // fp32 master weights -> the fp16 copy, once per step
            computed = halfParams;
        }
        for (Stage s : stages) {
            if (s != null) {
                s.setParams(computed);
            }
        }
        params = flatParams;
    }

    /**
     * A decoder that caches keys and values over the parameters last set (generation); null when this engine has
     * none (SameDiff) or this process holds only one pipeline stage: generation then recomputes the context.
     */
    public KvCacheDecoder newDecoder() {
        if (!"fused".equals(engine) || onlyStage >= 0 || params == null) {
            return null;
        }
        return new KvCacheDecoder(cfg, layout, params);
    }

    /**
     * Forward + backward of one micro-batch through all stages in order; ADDS the parameter gradients of this
     * micro-batch's mean loss into flatGrads and returns that mean loss.
     *
     * @param windows       [B][seq_len + 1] token ids: inputs are the first seq_len, targets the last seq_len
     * @param sampleIndices global sample index of each row (keys the dropout masks)
     */
    public double forwardBackward(int[][] windows, long[] sampleIndices, long step, long dropoutSeed, INDArray flatGrads) {
        return forwardBackward(windows, sampleIndices, step, dropoutSeed, flatGrads, stage -> { });
    }

    /**
     * As {@link #forwardBackward(int[][], long[], long, long, INDArray)}, calling {@code gradientsFinal} with a
     * stage index as soon as that stage's parameter gradients of this micro-batch are all added into flatGrads
     * (last stage first; stage 0 after the embedding backward, which completes a tied wte): data parallelism starts
     * that stage's AllReduce there, overlapping the rest of the backward pass.
     */
    public double forwardBackward(int[][] windows, long[] sampleIndices, long step, long dropoutSeed, INDArray flatGrads,
                                  java.util.function.IntConsumer gradientsFinal) {
        requireWhole("forwardBackward");
        checkFlat(flatGrads, "gradient");
        checkWindows(windows, seqLenPlusOne());
        if (sampleIndices.length != windows.length) {
            throw new IllegalArgumentException(windows.length + " windows but " + sampleIndices.length + " sample indices");
        }
        DropoutKeys keys = cfg.dropout() > 0.0 ? new DropoutKeys(dropoutSeed, step, sampleIndices) : null;
        int lastStage = stages.length - 1;
        INDArray x = null;
        for (int s = 0; s < lastStage; s++) {
            x = stages[s].forward(0, windows, x, keys);
        }
        double loss = stages[lastStage].loss(windows, x, keys, lossScale, flatGrads);
        INDArray grad = stages[lastStage].gradInput();
        for (int s = lastStage - 1; s >= 0; s--) {
            gradientsFinal.accept(s + 1);
            grad = stages[s].backward(0, grad, flatGrads);
        }
        gradientsFinal.accept(0);
        return loss;
    }

    /** Mean loss of a micro-batch of windows [B][seq_len + 1], no dropout, no gradients (evaluation). */
    public double loss(int[][] windows) {
        return loss(windows, null);
    }

    /**
     * Mean loss of a micro-batch without gradients, with the dropout masks of {@code keys} (null: no dropout):
     * the value forwardBackward returns for the same keys.
     */
    public double loss(int[][] windows, DropoutKeys keys) {
        requireWhole("loss");
        checkWindows(windows, seqLenPlusOne());
        if (keys != null && keys.batchSize() != windows.length) {
            throw new IllegalArgumentException(windows.length + " windows but dropout keys for " + keys.batchSize());
        }
        DropoutKeys used = cfg.dropout() > 0.0 ? keys : null;
        int lastStage = stages.length - 1;
        INDArray x = null;
        for (int s = 0; s < lastStage; s++) {
            x = stages[s].forward(-1, windows, x, used);
        }
        return stages[lastStage].loss(windows, x, used, 1.0, null);
    }

    /**
     * Logits [B, T', V] for inputs [B][T'] with 1 <= T' <= seq_len, no dropout. Shorter inputs are padded to
     * seq_len with token 0 and the padded positions are cut off: causality makes that exact.
     */
    public INDArray logits(int[][] inputs) {
        requireWhole("logits");
        if (inputs.length == 0) {
            throw new IllegalArgumentException("logits of an empty batch");
        }
        int length = inputs[0].length;
        int seqLen = cfg.seqLen();
        if (length < 1 || length > seqLen) {
            throw new IllegalArgumentException("inputs have " + length + " tokens, need 1.." + seqLen + " (model.seq_len)");
        }
        int[][] padded = new int[inputs.length][seqLen];
        for (int b = 0; b < inputs.length; b++) {
            if (inputs[b].length != length) {
                throw new IllegalArgumentException("input row " + b + " has " + inputs[b].length + " tokens, row 0 has " + length);
            }
            checkTokens(inputs[b], "input row " + b);
            System.arraycopy(inputs[b], 0, padded[b], 0, length);
        }
        int lastStage = stages.length - 1;
        INDArray x = null;
        for (int s = 0; s < lastStage; s++) {
            x = stages[s].forward(-1, padded, x, null);
        }
        INDArray logits = stages[lastStage].logits(padded, x);
        if (length == seqLen) {
            return logits;
        }
        return logits.get(NDArrayIndex.all(), NDArrayIndex.interval(0, length), NDArrayIndex.all()).dup('c');
    }

    private int seqLenPlusOne() {
        return cfg.seqLen() + 1;
    }

    private void checkWindows(int[][] windows, int length) {
        if (windows.length == 0) {
            throw new IllegalArgumentException("empty micro-batch");
        }
        for (int b = 0; b < windows.length; b++) {
            if (windows[b].length != length) {
                throw new IllegalArgumentException("window " + b + " has " + windows[b].length
                        + " tokens, expected model.seq_len + 1 = " + length);
            }
        }
    }

    private void checkTokens(int[] tokens, String where) {
        for (int t = 0; t < tokens.length; t++) {
            if (tokens[t] < 0 || tokens[t] >= cfg.vocabSize()) {
                throw new IllegalArgumentException(where + " position " + t + ": token " + tokens[t]
                        + " is outside [0, model.vocab_size=" + cfg.vocabSize() + ")");
            }
        }
    }

    private void checkFlat(INDArray flat, String what) {
        if (flat.length() != layout.size() || flat.dataType() != dtype) {
            throw new IllegalArgumentException("flat " + what + " buffer is " + flat.dataType() + "[" + flat.length()
                    + "], the model needs " + dtype + "[" + layout.size() + "]");
        }
    }

    @Override
    public void close() {
        for (Stage s : stages) {
            if (s != null) {
                s.close();
            }
        }
    }
}
