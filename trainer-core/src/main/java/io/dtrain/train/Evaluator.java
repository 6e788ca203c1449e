package io.dtrain.train;

import io.dtrain.data.loader.TokenDataset;
import io.dtrain.model.GptModel;

/**
 * Mean next-token loss over a fixed set of validation micro-batches: samples spread evenly over the validation
 * set (the same every evaluation, so evaluations are comparable), no dropout.
 */
public final class Evaluator {
    private final GptModel model;
    private final int[][][] batches;

    public Evaluator(GptModel model, TokenDataset val, int microBatch, int maxBatches) {
        this.model = model;
        long n = val.numSamples();
        int count = (int) Math.max(1, Math.min(maxBatches, n / microBatch));
        int rows = (int) Math.min(n, (long) count * microBatch);
        if (rows == 0) {
            throw new IllegalArgumentException("the validation set has no sample of " + val.seqLen()
                    + "+1 tokens; use a larger validation set or a shorter model.seq_len");
        }
        int perBatch = Math.min(microBatch, rows);
        count = rows / perBatch;
        long stride = n / ((long) count * perBatch);
        this.batches = new int[count][perBatch][val.seqLen() + 1];
        for (int b = 0; b < count; b++) {
            for (int i = 0; i < perBatch; i++) {
                val.window(((long) b * perBatch + i) * stride, batches[b][i]);
            }
        }
    }

    public int batches() {
        return batches.length;
    }

    public double meanLoss() {
        double sum = 0;
        for (int[][] b : batches) {
            sum += model.loss(b);
        }
        return sum / batches.length;
    }
}
