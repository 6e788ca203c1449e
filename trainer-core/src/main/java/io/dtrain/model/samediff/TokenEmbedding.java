package io.dtrain.model.samediff;

import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;

import io.dtrain.config.ModelConfig;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Arrays;

/**
 * Stage 0's token + position embedding, run outside SameDiff because {@code sd.gather} cannot be trained in
 * M2.1: forward gathers rows of wte and wpe, backward scatter-adds dL/dx0 into the wte rows that occur and sums
 * it over the batch into wpe.
 */
public final class TokenEmbedding {
    private final ModelConfig cfg;
    private final ParamLayout layout;
    private final DataType dtype;
    private INDArray wte;
    private INDArray wpe;

    TokenEmbedding(ModelConfig cfg, ParamLayout layout, DataType dtype) {
        this.cfg = cfg;
        this.layout = layout;
        this.dtype = dtype;
    }

    /** Copies wte and wpe out of a flat parameter buffer (a snapshot, like the stage graphs' copies). */
    public void setParams(INDArray flatParams) {
        wte = layout.view(flatParams, GptNames.WTE).dup('c');
        wpe = layout.view(flatParams, GptNames.WPE).dup('c');
    }

    /** x0 = wte[inputs] + wpe, shape [B, T, D] for inputs [B][T] with T == seq_len. */
    public INDArray forward(int[][] inputs) {
        if (wte == null) {
            throw new IllegalStateException("embedding: call setParams before forward");
        }
        int batch = inputs.length;
        int seqLen = cfg.seqLen();
        int[] tokens = new int[batch * seqLen];
        int[] positions = new int[batch * seqLen];
        for (int b = 0; b < batch; b++) {
            System.arraycopy(inputs[b], 0, tokens, b * seqLen, seqLen);
            for (int t = 0; t < seqLen; t++) {
                positions[b * seqLen + t] = t;
            }
        }
        INDArray x = Nd4j.pullRows(wte, 1, tokens);
        x.addi(Nd4j.pullRows(wpe, 1, positions));
        return x.reshape('c', batch, seqLen, cfg.dModel());
    }

    /**
     * ADDS the embedding gradients of dL/dx0 [B, T, D] into a flat gradient buffer. Duplicate tokens are summed
     * in double, in row order, so the result does not depend on threads.
     */
    public void backward(int[][] inputs, INDArray gradX0, INDArray flatGrads) {
        int batch = inputs.length;
        int seqLen = cfg.seqLen();
        int d = cfg.dModel();
        double[] g = gradX0.castTo(DataType.DOUBLE).dup('c').data().asDouble();
        if (g.length != (long) batch * seqLen * d) {
            throw new IllegalArgumentException("embedding gradient has " + g.length + " elements, expected "
                    + ((long) batch * seqLen * d));
        }
        double[] wpeGrad = new double[seqLen * d];
        int[] slotOfToken = new int[cfg.vocabSize()];
        Arrays.fill(slotOfToken, -1);
        int[] tokenOfSlot = new int[Math.min(cfg.vocabSize(), batch * seqLen)];
        double[] wteRows = new double[tokenOfSlot.length * d];
        int slots = 0;
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < seqLen; t++) {
                int row = (b * seqLen + t) * d;
                int token = inputs[b][t];
                int slot = slotOfToken[token];
                if (slot < 0) {
                    slot = slots++;
                    slotOfToken[token] = slot;
                    tokenOfSlot[slot] = token;
                }
                int so = slot * d;
                int po = t * d;
                for (int k = 0; k < d; k++) {
                    wteRows[so + k] += g[row + k];
                    wpeGrad[po + k] += g[row + k];
                }
            }
        }
        layout.view(flatGrads, GptNames.WPE).addi(Nd4j.create(wpeGrad, new long[] {seqLen, d}, DataType.DOUBLE).castTo(dtype));
        INDArray rows = Nd4j.create(Arrays.copyOf(wteRows, slots * d), new long[] {slots, d}, DataType.DOUBLE).castTo(dtype);
        INDArray wteGrad = layout.view(flatGrads, GptNames.WTE);
        for (int s = 0; s < slots; s++) {
            wteGrad.getRow(tokenOfSlot[s]).addi(rows.getRow(s));
        }
    }
}
