package io.dtrain.train;

import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.PackedTokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.model.GptModel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Evaluation sharded over data-parallel ranks: what each rank contributes to the cross-rank sum, added up, gives
 * the one-rank mean for any number of ranks, including ranks left without a batch.
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

    @Test
    void shardedTotalsAddUpToTheOneRankMean(@TempDir Path tmp) {
        RunConfig cfg = TrainerTest.micro(tmp);
        PackedTokenDataset val = TokenDatasets.open(TrainerTest.REPO.resolve("data/pile-tiny/val").toString(),
                TrainTokenizer.forConfig(cfg), cfg.model().seqLen(), BadRecordPolicy.SKIP);
        try (GptModel model = new GptModel(cfg.model())) {
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 7);
            model.setParams(params);
            Evaluator ev = new Evaluator(model, val, 2, 5);
            assertEquals(5, ev.batches());
            double oneRank = ev.meanLoss();
            for (int ranks : new int[] {2, 3, 7}) {
                Recording sync = new Recording();
                for (int r = 0; r < ranks; r++) {
                    ev.meanLoss(r, ranks, sync);
                }
                double lossTokens = 0;
                double tokens = 0;
                for (double[] c : sync.contributions) {
                    lossTokens += c[0];
                    tokens += c[1];
                }
                assertEquals(5.0 * 2 * cfg.model().seqLen(), tokens, 0.0, "every batch counted once over " + ranks + " ranks");
                assertEquals(oneRank, lossTokens / tokens, 1e-12 * oneRank, ranks + " ranks");
                if (ranks > 5) {
                    assertEquals(0.0, sync.contributions.get(ranks - 1)[1], 0.0, "rank " + (ranks - 1) + " has no batch");
                }
            }
        }
    }
}
