package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.model.GptModel;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static io.dtrain.launcher.DpRuns.REPO;
import static io.dtrain.launcher.DpRuns.assertClose;
import static io.dtrain.launcher.DpRuns.microOverrides;
import static io.dtrain.launcher.DpRuns.steps;
import static io.dtrain.launcher.DpRuns.summary;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * ZeRO-1 ({@code optimizer.shard_state: true}) over 2 worker processes equals one unsharded process (gpt-micro,
 * float64, dropout): losses, gradient norms, final parameters and the checkpointed AdamW moments within 1e-9;
 * each rank held half of the optimizer state, and its gradients in the group's shared memory (averaged in place),
 * which gives the same bits as ordinary gradients reduce-scattered around the ring ({@code DTRAIN_SHM_GRADIENTS=false}); and a sharded run resumed from its step-2 checkpoint repeats the
 * uninterrupted run's last step bit for bit.
 */
class DpZeroTest {
    static final int STEPS = 3;
    @TempDir
    static Path tmp;
    static Path oneRank;
    static Path sharded;
    static List<String> setsOne;
    static List<String> setsSharded;

    @BeforeAll
    static void train() {
        oneRank = tmp.resolve("one");
        sharded = tmp.resolve("zero1");
        setsOne = microOverrides(oneRank, 8, STEPS);
        setsSharded = microOverrides(sharded, 8, STEPS, "optimizer.shard_state=true", "training.checkpoint_interval=2");
        Cli one = Cli.run(trainArgs(setsOne).toArray(String[]::new));
        assertEquals(0, one.exitCode(), one.toString());
        launch(trainArgs(setsSharded));
    }

    static void launch(List<String> trainArgs, String... launchOptions) {
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "2", "--memory-per-worker", "1g",
                "--stop-grace", "2"));
        args.addAll(List.of(launchOptions));
        args.add("--");
        args.addAll(trainArgs);
        Cli cli = Cli.run(args.toArray(String[]::new));
        assertEquals(0, cli.exitCode(), cli.toString());
    }

    @Test
    void shardedTwoRanksEqualOneUnshardedRank() {
        List<JsonNode> one = steps(oneRank, 0);
        for (int r = 0; r < 2; r++) {
            List<JsonNode> dp = steps(sharded, r);
            assertEquals(STEPS, dp.size());
            for (int i = 0; i < STEPS; i++) {
                assertClose(one.get(i).get("loss").asDouble(), dp.get(i).get("loss").asDouble(), 1e-9,
                        "loss of step " + (i + 1) + " on rank " + r);
                assertClose(one.get(i).get("grad_norm").asDouble(), dp.get(i).get("grad_norm").asDouble(), 1e-9,
                        "gradient norm of step " + (i + 1) + " on rank " + r);
            }
            // One host: the gradients are the group's shared buffer, averaged in place (an AllReduce in the exchange)
            // instead of reduce-scattered through padded copies; each rank writes its half of the result into the
            // other's buffer, half the buffer per step.
            JsonNode s = summary(sharded, r);
            assertEquals(io.dtrain.train.dp.SharedGradients.ON_BY_DEFAULT, s.get("gradients_in_shared_memory").asBoolean(),
                    "rank " + r + ": gradients in shared memory");
            double expected = s.get("gradient_buffer_bytes").asLong() * STEPS / 2.0;
            double sent = s.get("gradient_allreduce_bytes_sent").asLong();
            assertTrue(sent > expected * 0.98 && sent < expected * 1.02, "rank " + r + " sent " + sent
                    + " bytes averaging gradients, expected about " + expected);
        }
        RunConfig cfg = ConfigLoader.load(REPO.resolve("configs/gpt-micro.yaml"), setsOne, REPO);
        try (GptModel model = new GptModel(cfg.model())) {
            long size = model.layout().size();
            assertEquals((size + 1) / 2, summary(sharded, 0).get("optimizer_state_elements").asLong(),
                    "rank 0 holds the first half of the AdamW state");
            assertEquals(size / 2, summary(sharded, 1).get("optimizer_state_elements").asLong(),
                    "rank 1 holds the rest");
            assertEquals(size, summary(oneRank, 0).get("optimizer_state_elements").asLong());
            double[][] a = state(model, oneRank);
            double[][] b = state(model, sharded);
            String[] what = {"parameter", "AdamW m", "AdamW v"};
            for (int k = 0; k < 3; k++) {
                assertEquals(a[k].length, b[k].length);
                // Relative 1e-9, with a floor of 1e-3 of the tensor's largest magnitude for elements that cancel to ~0
                // (the sharded norm sums its squares in another order, which moves the last bits of every update).
                double floor = 1e-3 * java.util.Arrays.stream(a[k]).map(Math::abs).max().orElse(0);
                for (int i = 0; i < a[k].length; i++) {
                    assertEquals(a[k][i], b[k][i], 1e-9 * Math.max(floor, Math.abs(a[k][i])), what[k] + " element " + i);
                }
            }
        }
    }

    /**
     * At 2 ranks the in-place AllReduce of shared gradients and the ring's reduce-scatter of ordinary ones add the
     * same two numbers and halve the sum exactly, so the runs are equal bit for bit (at 3 or more ranks the summation
     * orders differ: the exchange sums in rank order, the ring from the segment's next rank on).
     */
    @Test
    void sharedAndOrdinaryGradientsGiveTheSameBits() {
        Path ordinary = tmp.resolve("zero1-ordinary");
        List<String> sets = microOverrides(ordinary, 8, STEPS, "optimizer.shard_state=true",
                "training.checkpoint_interval=2");
        launch(trainArgs(sets), "--env", "DTRAIN_SHM_GRADIENTS=false");
        for (int r = 0; r < 2; r++) {
            assertEquals(false, summary(ordinary, r).get("gradients_in_shared_memory").asBoolean());
            List<JsonNode> a = steps(sharded, r);
            List<JsonNode> b = steps(ordinary, r);
            for (int i = 0; i < STEPS; i++) {
                assertEquals(a.get(i).get("loss").asDouble(), b.get(i).get("loss").asDouble(), 0.0, "loss, step " + (i + 1));
                assertEquals(a.get(i).get("grad_norm").asDouble(), b.get(i).get("grad_norm").asDouble(), 0.0,
                        "gradient norm, step " + (i + 1));
            }
        }
        assertSameState(sharded, ordinary, "parameters and AdamW moments, bit for bit");
    }

    @Test
    void shardedRunResumedFromItsCheckpointRepeatsTheUninterruptedRun() throws IOException {
        Path stepTwo;
        try (Stream<Path> dirs = Files.list(sharded.resolve("checkpoints"))) {
            stepTwo = dirs.filter(Files::isDirectory).filter(d -> Checkpoint.load(d).step() == 2).findFirst()
                    .orElseThrow(() -> new AssertionError("no step-2 checkpoint in " + sharded));
        }
        Path resumed = tmp.resolve("zero1-resumed");
        List<String> sets = microOverrides(resumed, 8, STEPS, "optimizer.shard_state=true",
                "training.checkpoint_interval=2");
        launch(trainArgs(sets, "--resume", stepTwo.toString()));
        List<JsonNode> again = steps(resumed, 0);
        assertEquals(1, again.size(), "the resumed run trains only step 3");
        assertEquals(steps(sharded, 0).get(STEPS - 1).get("loss").asDouble(), again.get(0).get("loss").asDouble(), 0.0);
        assertSameState(sharded, resumed, "parameters and AdamW moments after the resumed step, bit for bit");
    }

    /** The latest checkpoints of two gpt-micro runs hold the same parameters and AdamW moments, bit for bit. */
    private static void assertSameState(Path runA, Path runB, String message) {
        RunConfig cfg = ConfigLoader.load(REPO.resolve("configs/gpt-micro.yaml"), setsOne, REPO);
        try (GptModel model = new GptModel(cfg.model())) {
            double[][] a = state(model, runA);
            double[][] b = state(model, runB);
            for (int k = 0; k < 3; k++) {
                assertArrayEquals(a[k], b[k], 0.0, message);
            }
        }
    }

    /** Parameters, AdamW m and v of a run's latest checkpoint. */
    private static double[][] state(GptModel model, Path runDir) {
        Checkpoint ck = Checkpoint.load(runDir);
        INDArray p = model.newFlatBuffer();
        INDArray m = model.newFlatBuffer();
        INDArray v = model.newFlatBuffer();
        ck.readParams(model.layout(), p);
        ck.readOptimizer(model.layout(), m, v);
        return new double[][] {p.data().asDouble(), m.data().asDouble(), v.data().asDouble()};
    }
}
