package io.dtrain.train;

import io.dtrain.data.loader.TokenDataset;
import io.dtrain.model.GptModel;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Mean next-token loss over a fixed set of validation sequences (training.eval_sequences): windows spread evenly
 * over the validation set (all of it if smaller), no dropout. The set depends only on the validation data and the
 * count, never on the micro-batch or the number of data-parallel ranks, and is the same every evaluation, so
 * evaluations are comparable across steps and layouts. For the forward passes it is cut into batches of at most
 * {@code batchSize} sequences (the last may be smaller); the mean is token-weighted, so neither the cut nor how the
 * batches are shared out over ranks changes it.
 */
public final class Evaluator {
    private final GptModel model;
    private final int[][][] batches;
    private final long[] sampleIndices;

    /**
     * @param sequences validation sequences to evaluate (capped at the validation set's sample count)
     * @param batchSize sequences per forward pass (e.g. the run's micro-batch): memory, not the result
     */
    public Evaluator(GptModel model, TokenDataset val, int sequences, int batchSize) {
        if (sequences < 1 || batchSize < 1) {
            throw new IllegalArgumentException("sequences and batch size must be >= 1, got " + sequences + ", " + batchSize);
        }
        this.model = model;
        long n = val.numSamples();
        if (n == 0) {
            throw new IllegalArgumentException("the validation set has no sample of " + val.seqLen()
                    + "+1 tokens; use a larger validation set or a shorter model.seq_len");
        }
        int count = (int) Math.min(sequences, n);
        long stride = n / count;
        this.sampleIndices = new long[count];
        this.batches = new int[(count + batchSize - 1) / batchSize][][];
        for (int b = 0; b < batches.length; b++) {
            batches[b] = new int[Math.min(batchSize, count - b * batchSize)][val.seqLen() + 1];
            for (int i = 0; i < batches[b].length; i++) {
                int s = b * batchSize + i;
                sampleIndices[s] = s * stride;
                val.window(sampleIndices[s], batches[b][i]);
            }
        }
    }

    public int batches() {
        return batches.length;
    }

    /** The validation sequences evaluated. */
    public int sequences() {
        return sampleIndices.length;
    }

    /** The validation samples evaluated, in order: the set that must not depend on the layout. */
    public long[] sampleIndices() {
        return sampleIndices.clone();
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
            double tokens = tokens(batch);
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

    /** Tokens whose loss a batch of windows contributes. */
    public static double tokens(int[][] batch) {
        return (double) batch.length * (batch[0].length - 1);
    }
}
