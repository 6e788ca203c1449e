package io.dtrain.config;

/**
 * The GPT's shape. Keys under {@code model:} in the YAML file, one field each (snake_case there).
 *
 * @param vocabSize      tokens in the vocabulary (257 for byte-level: 256 bytes + end-of-document)
 * @param seqLen         context length T (positions of the learned position embedding)
 * @param dModel         residual width D
 * @param nLayer         transformer blocks L
 * @param nHead          attention heads H (D % H == 0)
 * @param dFf            feed-forward width (0 means 4 * D)
 * @param norm           "pre" (GPT-2) or "post" (LayerNorm(x + sublayer(x)))
 * @param activation     "gelu" (tanh approximation, as GPT-2) or "relu"
 * @param dropout        dropout probability on embeddings, attention probabilities and residual branches
 * @param tieEmbeddings  LM head shares the token embedding matrix
 * @param bias           linear layers and LayerNorms have biases
 * @param initStd        std of the normal initialisation of weights (residual projections scaled by 1/sqrt(2L))
 * @param layerNormEps   LayerNorm epsilon
 * @param dtype          "float32" or "float64" (tests use float64)
 * @param engine         what computes the model: "fused" (hand-written CPU kernels), "samediff" (the SameDiff
 *                       graph; the CUDA path) or "auto" (fused on the CPU backend, samediff otherwise)
 * @param initFrom       GPT-2-layout weights to start from (a safetensors file or a Hugging Face model directory),
 *                       "" to initialise from training.seed
 */
public record ModelConfig(
        int vocabSize,
        int seqLen,
        int dModel,
        int nLayer,
        int nHead,
        int dFf,
        String norm,
        String activation,
        double dropout,
        boolean tieEmbeddings,
        boolean bias,
        double initStd,
        double layerNormEps,
        String dtype,
        String engine,
        String initFrom) {

    /** No weights to start from: initialised from training.seed. */
    public ModelConfig(int vocabSize, int seqLen, int dModel, int nLayer, int nHead, int dFf, String norm,
                       String activation, double dropout, boolean tieEmbeddings, boolean bias, double initStd,
                       double layerNormEps, String dtype, String engine) {
        this(vocabSize, seqLen, dModel, nLayer, nHead, dFf, norm, activation, dropout, tieEmbeddings, bias, initStd,
                layerNormEps, dtype, engine, "");
    }

    public int ffWidth() {
        return dFf > 0 ? dFf : 4 * dModel;
    }

    public int headDim() {
        return dModel / nHead;
    }

    public boolean preNorm() {
        return "pre".equals(norm);
    }

    /**
     * The engine that runs: {@code engine} itself, or for "auto" fused on ND4J's CPU backend and samediff on any
     * other (the fused kernels read and write host memory).
     */
    public String resolvedEngine() {
        if (!"auto".equals(engine)) {
            return engine;
        }
        return org.nd4j.linalg.factory.Nd4j.getBackend().getClass().getName().contains("cpu") ? "fused" : "samediff";
    }

    public boolean isDouble() {
        return "float64".equals(dtype);
    }

    /** Defaults of every key (the values used when a YAML file leaves a key out). */
    public static ModelConfig defaults() {
        return ConfigSchema.defaults().model();
    }
}
