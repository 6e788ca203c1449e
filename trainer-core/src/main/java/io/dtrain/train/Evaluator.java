package io.dtrain.train;

import io.dtrain.data.loader.TokenDataset;
import io.dtrain.model.GptModel;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

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
        return meanLoss(0, 1, totals -> { });
    }

    /**
     * The same mean with the batches shared out over data-parallel ranks (batch b on rank b % ranks): each rank
     * sums loss x tokens and tokens over its batches, {@code sumOverRanks} adds the sums across ranks, and their
     * ratio is the one-rank value whatever the number of ranks (or batches per rank, zero included).
     */
    public double meanLoss(int rank, int ranks, Consumer<double[]> sumOverRanks) {
        double[] totals = new double[2];
        for (int[][] batch : batchesOf(rank, ranks)) {
            double tokens = (double) batch.length * (batch[0].length - 1);
            totals[0] += model.loss(batch) * tokens;
            totals[1] += tokens;
        }
        sumOverRanks.accept(totals);
        return totals[0] / totals[1];
    }

    /** The batches rank {@code rank} of {@code ranks} evaluates (b % ranks == rank; none when ranks > batches). */
    public List<int[][]> batchesOf(int rank, int ranks) {
        List<int[][]> mine = new ArrayList<>();
        for (int b = rank; b < batches.length; b += ranks) {
            mine.add(batches[b]);
        }
        return mine;
    }
}
