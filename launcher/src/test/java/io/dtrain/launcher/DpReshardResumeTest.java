package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static io.dtrain.launcher.DpRuns.assertClose;
import static io.dtrain.launcher.DpRuns.finalParams;
import static io.dtrain.launcher.DpRuns.microOverrides;
import static io.dtrain.launcher.DpRuns.steps;
import static io.dtrain.launcher.DpRuns.summary;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A ZeRO-1 checkpoint written by 2 ranks resumes on 3 ranks and continues the same global sample order: steps 3-4
 * of the 3-rank run equal a 1-rank run resumed from the same checkpoint (gpt-micro, float64, dropout 0.1, global
 * batch 12 = 3 x 2 x 2 = 1 x 6 x 2) in losses, gradient norms and final parameters within 1e-9, and the 3 ranks
 * together trained on exactly the 1-rank run's (step, sample) pairs, each on a third of them.
 */
class DpReshardResumeTest {
    static final int GLOBAL_BATCH = 12;
    static final int CHECKPOINT_STEP = 2;
    static final int STEPS = 4;

    @TempDir
    static Path tmp;

    @Test
    void zeroOneCheckpointFromTwoRanksResumesOnThreeLikeOneRank() {
        Path twoRanks = tmp.resolve("two-zero1");
        launch(2, trainArgs(microOverrides(twoRanks, GLOBAL_BATCH, CHECKPOINT_STEP, "optimizer.shard_state=true")));
        assertEquals(CHECKPOINT_STEP, steps(twoRanks, 0).size());

        Path threeRanks = tmp.resolve("three-zero1-resumed");
        List<String> setsThree = microOverrides(threeRanks, GLOBAL_BATCH, STEPS, "optimizer.shard_state=true");
        launch(3, trainArgs(setsThree, "--resume", twoRanks.toString()));

        Path oneRank = tmp.resolve("one-resumed");
        List<String> setsOne = microOverrides(oneRank, GLOBAL_BATCH, STEPS);
        Cli one = Cli.run(trainArgs(setsOne, "--resume", twoRanks.toString()).toArray(String[]::new));
        assertEquals(0, one.exitCode(), one.toString());

        List<JsonNode> expected = steps(oneRank, 0);
        assertEquals(STEPS - CHECKPOINT_STEP, expected.size(), "the resumed 1-rank run trains only steps 3-4");
        for (int r = 0; r < 3; r++) {
            List<JsonNode> actual = steps(threeRanks, r);
            assertEquals(STEPS - CHECKPOINT_STEP, actual.size(), "steps recorded by rank " + r + " of 3");
            for (int i = 0; i < actual.size(); i++) {
                int step = CHECKPOINT_STEP + i + 1;
                // "step" in the records counts from 0, as the trainer's step counter does.
                assertEquals(step - 1, expected.get(i).get("step").asInt(), "1-rank record " + i + " is step " + step);
                assertEquals(step - 1, actual.get(i).get("step").asInt(), "rank " + r + " record " + i + " is step " + step);
                assertClose(expected.get(i).get("loss").asDouble(), actual.get(i).get("loss").asDouble(), 1e-9,
                        "loss of step " + step + " on rank " + r + " of 3");
                assertClose(expected.get(i).get("grad_norm").asDouble(), actual.get(i).get("grad_norm").asDouble(),
                        1e-9, "gradient norm of step " + step + " on rank " + r + " of 3");
            }
        }
        // The resumed runs' losses must differ from the first two steps: a run that restarted from step 0 fails here.
        List<JsonNode> firstSteps = steps(twoRanks, 0);
        for (int i = 0; i < CHECKPOINT_STEP; i++) {
            for (JsonNode later : expected) {
                assertTrue(firstSteps.get(i).get("loss").asDouble() != later.get("loss").asDouble(),
                        "step " + (i + 1) + " and a resumed step have the same loss: did the run really resume?");
            }
        }

        long oneSamples = summary(oneRank, 0).get("samples").asLong();
        assertEquals((long) GLOBAL_BATCH * (STEPS - CHECKPOINT_STEP), oneSamples, "samples of steps 3-4 on 1 rank");
        long digestSum = 0;
        for (int r = 0; r < 3; r++) {
            JsonNode s = summary(threeRanks, r);
            assertEquals(oneSamples / 3, s.get("samples").asLong(), "rank " + r + " trains on 1/3 of steps 3-4");
            digestSum += Long.parseUnsignedLong(s.get("sample_digest").asText(), 16);
        }
        assertEquals(Long.parseUnsignedLong(summary(oneRank, 0).get("sample_digest").asText(), 16), digestSum,
                "together the 3 ranks trained on exactly the 1-rank run's (step, sample) pairs of steps 3-4");

        DpRuns.assertSameFinalParams(oneRank, setsOne, threeRanks, setsThree);
    }

    private static void launch(int ranks, List<String> trainArgs) {
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", Integer.toString(ranks),
                "--memory-per-worker", "1g", "--stop-grace", "2", "--"));
        args.addAll(trainArgs);
        Cli cli = Cli.run(args.toArray(String[]::new));
        assertEquals(0, cli.exitCode(), cli.toString());
    }
}
