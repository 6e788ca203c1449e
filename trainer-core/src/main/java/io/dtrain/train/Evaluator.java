package io.dtrain.train;

import io.dtrain.data.loader.TokenDataset;
import io.dtrain.model.GptModel;

/**
 * Mean next-token loss over a fixed set of validation micro-batches: samples spread evenly over the validation
 * set (the same every evaluation, so evaluations are comparable), no dropout; token-weighted, so the value does
 * not depend on how the batches are shared out over data-parallel ranks.
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
        return meanLoss(0, 1, GradientSync.LOCAL);
    }

    /**
     * The same mean with the batches shared out over data-parallel ranks (batch b on rank b % ranks): each rank
     * sums loss x tokens and tokens over its batches, the sums are added across ranks, and their ratio is the
     * one-rank value whatever the number of ranks (or batches per rank, zero included).
     */
    public double meanLoss(int rank, int ranks, GradientSync sync) {
        double[] totals = new double[2];
        for (int b = rank; b < batches.length; b += ranks) {
            double tokens = (double) batches[b].length * (batches[b][0].length - 1);
            totals[0] += model.loss(batches[b]) * tokens;
            totals[1] += tokens;
        }
        sync.sumAcrossRanks(totals);
        return totals[0] / totals[1];
    }

    /**
     * The same mean with this process holding one pipeline stage: replica {@code rank}'s batches (b % ranks == rank)
     * run forward-only through the pipeline as micro-batches; the last stage's totals, added over the world by
     * {@code sumOverWorld} (every other rank contributes zeros), give every rank the one-process value.
     */
    public double meanLoss(int rank, int ranks, io.dtrain.pipeline.StageExecutor stage,
                           java.util.function.Consumer<double[]> sumOverWorld) {
        java.util.List<io.dtrain.data.loader.MicroBatch> mine = new java.util.ArrayList<>();
        for (int b = rank; b < batches.length; b += ranks) {
            mine.add(new io.dtrain.data.loader.MicroBatch(batches[b], new long[batches[b].length]));
        }
        double[] totals = new double[2];
        if (!mine.isEmpty()) {
            io.dtrain.pipeline.StageExecutor.StageResult r = stage.evaluate(mine);
            double tokensPerBatch = (double) batches[0].length * (batches[0][0].length - 1);
            totals[0] = r.lossSum() * tokensPerBatch;
            totals[1] = r.losses() * tokensPerBatch;
        }
        sumOverWorld.accept(totals);
        return totals[0] / totals[1];
    }
}
