package io.dtrain.train;

import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.PackedTokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.model.GptModel;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Evaluation sharded over data-parallel ranks: what each rank contributes to the cross-rank sum, added up, gives
 * the one-rank mean for any number of ranks, including ranks left without a batch; and the evaluated set is
 * training.eval_sequences sequences whatever the micro-batch and the number of ranks.
 */
class EvaluatorShardingTest {

    /** Keeps what a rank would contribute to the AllReduce, unchanged (as if it were the only rank). */
    static final class Recording implements Consumer<double[]> {
        final List<double[]> contributions = new ArrayList<>();

        @Override
        public void accept(double[] values) {
            contributions.add(values.clone());
        }
    }

    @TempDir
    static Path tmp;
    /** gpt-micro in float64, one model for every test (only training.* keys differ between their configs). */
    static RunConfig cfg;
    static GptModel model;
    static PackedTokenDataset val;

    @BeforeAll
    static void initialisedModel() {
        cfg = TrainerTest.micro(tmp);
        model = new GptModel(cfg.model());
        INDArray params = model.newFlatBuffer();
        model.initParams(params, 7);
        model.setParams(params);
        val = TokenDatasets.open(TrainerTest.REPO.resolve("data/pile-tiny/val").toString(),
                TrainTokenizer.forConfig(cfg), cfg.model().seqLen(), BadRecordPolicy.SKIP);
    }

    @AfterAll
    static void close() {
        model.close();
    }

    /** What each of {@code ranks} ranks contributes to the cross-rank sum (loss x tokens, tokens). */
    private static Recording contributions(Evaluator ev, int ranks) {
        Recording sync = new Recording();
        for (int r = 0; r < ranks; r++) {
            ev.meanLoss(r, ranks, sync);
        }
        return sync;
    }

    /** The cross-rank sum of the contributions: the totals every rank would receive. */
    private static double[] summed(Recording sync) {
        double[] totals = new double[2];
        for (double[] c : sync.contributions) {
            totals[0] += c[0];
            totals[1] += c[1];
        }
        return totals;
    }

    @Test
    void shardedTotalsAddUpToTheOneRankMean() {
        Evaluator ev = new Evaluator(model, val, 10, 2);
        assertEquals(5, ev.batches());
        double oneRank = ev.meanLoss();
        for (int ranks : new int[] {2, 3, 7}) {
            Recording sync = contributions(ev, ranks);
            double[] totals = summed(sync);
            assertEquals(5.0 * 2 * cfg.model().seqLen(), totals[1], 0.0, "every batch counted once over " + ranks + " ranks");
            assertEquals(oneRank, totals[0] / totals[1], 1e-12 * oneRank, ranks + " ranks");
            if (ranks > 5) {
                assertEquals(0.0, sync.contributions.get(ranks - 1)[1], 0.0, "rank " + (ranks - 1) + " has no batch");
            }
        }
    }

    /**
     * The case: with eval counted in micro-batches, 1 rank evaluated 128 sequences and the same config on 2
     * ranks 64. Now the Trainer's evaluator (eval_sequences, cut by the run's micro-batch) holds the same sequences
     * on 1 and 2 ranks, automatic micro-batch or not, and gives the same mean, which is also the mean of the
     * sequences evaluated in one pass: a short last batch weighs by its tokens.
     */
    @Test
    void theEvaluatedSetIsTheSameOnOneRankAndOnTwoRanks() {
        // global_batch x micro_batch: automatic (8 on 1 rank, 4 on 2), and 3 (cuts 10 into 3 + 3 + 3 + 1)
        double wholeMean = new Evaluator(model, val, 10, 10).meanLoss();
        for (int[] batch : new int[][] {{8, 0}, {6, 3}}) {
            RunConfig run = TrainerTest.micro(tmp, "training.global_batch=" + batch[0], "training.micro_batch=" + batch[1],
                    "training.eval_sequences=10");
            Evaluator oneRank = new Evaluator(model, val, run.training().evalSequences(), run.microBatch(1));
            Evaluator twoRanks = new Evaluator(model, val, run.training().evalSequences(), run.microBatch(2));
            String what = "micro_batch " + batch[1];
            assertEquals(10, oneRank.sequences(), what);
            assertArrayEquals(oneRank.sampleIndices(), twoRanks.sampleIndices(), what + ": the same validation samples");
            long stride = val.numSamples() / 10;
            assertEquals(9 * stride, oneRank.sampleIndices()[9], what + ": spread evenly over the validation set");

            double one = oneRank.meanLoss();
            double[] two = summed(contributions(twoRanks, 2));
            assertEquals(10.0 * cfg.model().seqLen(), two[1], 0.0, what + ": tokens evaluated over 2 ranks");
            assertEquals(one, two[0] / two[1], 1e-12 * one, what + ": mean over 2 ranks");
            assertEquals(wholeMean, one, 1e-12 * one, what + ": mean of the same sequences in one pass");
        }
    }

    @Test
    void aSmallValidationSetIsEvaluatedWhole() {
        Evaluator all = new Evaluator(model, val, Integer.MAX_VALUE, 64);
        assertEquals(val.numSamples(), all.sequences());
        assertEquals(val.numSamples() - 1, all.sampleIndices()[all.sequences() - 1]);
    }
}
