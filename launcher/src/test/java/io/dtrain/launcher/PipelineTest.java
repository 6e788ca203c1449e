package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
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
 * Pipeline parallelism over real stage processes (Aeron point-to-point between neighbouring stages) equals one
 * process training on the same global batch: gpt-micro with 4 blocks, float64, dropout 0.1, tied embeddings;
 * P = 2 (1F1B, M = 4; GPipe, M = 8), P = 4 (GPipe, M = 1) and 2 stages x 2 replicas (1F1B, M = 2).
 * Per-step losses, gradient norms, the final evaluation and the final parameters (read from the pipelined
 * checkpoint with the whole model's layout, i.e. re-partitioned to P = 1) agree within 1e-9 relative. Each stage
 * holds only its own parameters, activations crossed the links, and the 1F1B stages held at most P - stage
 * micro-batches' activations while GPipe held all M. A pipelined checkpoint resumes in one process (steps 3-4 equal
 * the uninterrupted run) and serves {@code dtrain generate}.
 */
class PipelineTest {
    static final int STEPS = 4;
    /** gpt-micro's 34,208 parameters with 4 blocks instead of 2. */
    static final String[] FOUR_BLOCKS = {"model.n_layer=4", "training.checkpoint_interval=2"};
    @TempDir
    static Path tmp;

    static Path reference;
    static List<String> referenceSets;
    static Path twoStages1f1b;
    static Path twoStagesGpipe;
    static Path fourStages;
    static Path twoByTwo;

    @BeforeAll
    static void train() {
        reference = tmp.resolve("one");
        referenceSets = sets(reference, 2);
        Cli one = Cli.run(trainArgs(referenceSets).toArray(String[]::new));
        assertEquals(0, one.exitCode(), one.toString());
        twoStages1f1b = launch(2, "p2-1f1b", 2, "parallel.pipeline.stages=2", "parallel.pipeline.schedule=1f1b");
        twoStagesGpipe = launch(2, "p2-gpipe", 1, "parallel.pipeline.stages=2", "parallel.pipeline.schedule=gpipe");
        fourStages = launch(4, "p4-gpipe", 8, "parallel.pipeline.stages=4", "parallel.pipeline.schedule=gpipe");
        twoByTwo = launch(4, "p2xd2", 2, "parallel.pipeline.stages=2", "parallel.pipeline.schedule=1f1b");
    }

    static List<String> sets(Path dir, int microBatch, String... more) {
        List<String> extra = new ArrayList<>(List.of(FOUR_BLOCKS));
        extra.add("training.micro_batch=" + microBatch);
        extra.addAll(List.of(more));
        return microOverrides(dir, 8, STEPS, extra.toArray(String[]::new));
    }

    static Path launch(int ranks, String name, int microBatch, String... more) {
        Path dir = tmp.resolve(name);
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", Integer.toString(ranks),
                "--memory-per-worker", "768m", "--stop-grace", "2", "--"));
        args.addAll(trainArgs(sets(dir, microBatch, more)));
        Cli cli = Cli.run(args.toArray(String[]::new));
        assertEquals(0, cli.exitCode(), cli.toString());
        assertTrue(cli.out().contains("[rank 0] done: " + STEPS + " steps"), cli.out());
        return dir;
    }

    @Test
    void twoStagesWithOneForwardOneBackwardEqualOneProcess() {
        assertEquivalent(twoStages1f1b, 2, 1, 4);
        // 1F1B: stage s holds at most P - s micro-batches' activations
        assertEquals(2, summary(twoStages1f1b, 0).get("peak_live_activations").asInt());
        assertEquals(1, summary(twoStages1f1b, 1).get("peak_live_activations").asInt());
    }

    @Test
    void twoStagesWithGpipeEqualOneProcess() {
        assertEquivalent(twoStagesGpipe, 2, 1, 8);
        // GPipe: every stage holds all M micro-batches' activations
        assertEquals(8, summary(twoStagesGpipe, 0).get("peak_live_activations").asInt());
        assertEquals(8, summary(twoStagesGpipe, 1).get("peak_live_activations").asInt());
    }

    @Test
    void fourStagesWithOneMicroBatchEqualOneProcess() {
        assertEquivalent(fourStages, 4, 1, 1);
    }

    @Test
    void twoStagesTimesTwoReplicasEqualOneProcess() {
        assertEquivalent(twoByTwo, 2, 2, 2);
        // replicas of a stage each trained on half of every global batch
        long one = summary(reference, 0).get("samples").asLong();
        for (int r = 0; r < 4; r++) {
            assertEquals(one / 2, summary(twoByTwo, r).get("samples").asLong(), "rank " + r);
        }
    }

    static void assertEquivalent(Path dir, int stages, int replicas, int microbatches) {
        List<JsonNode> one = steps(reference, 0);
        assertEquals(STEPS, one.size());
        for (int r = 0; r < stages * replicas; r++) {
            List<JsonNode> p = steps(dir, r);
            assertEquals(STEPS, p.size(), "steps recorded by rank " + r);
            for (int i = 0; i < STEPS; i++) {
                assertClose(one.get(i).get("loss").asDouble(), p.get(i).get("loss").asDouble(), 1e-9,
                        "loss of step " + (i + 1) + " on rank " + r);
                assertClose(one.get(i).get("grad_norm").asDouble(), p.get(i).get("grad_norm").asDouble(), 1e-9,
                        "gradient norm of step " + (i + 1) + " on rank " + r);
                assertTrue(p.get(i).get("bubble_ms").isNumber(), "bubble recorded");
            }
            // One host: a stage's replicas average their gradients in place, in the stage group's shared memory
            assertEquals(replicas > 1 && io.dtrain.train.dp.SharedGradients.ON_BY_DEFAULT,
                    summary(dir, r).get("gradients_in_shared_memory").asBoolean(), "rank " + r + ": gradients in shared memory");
        }
        if (microbatches * replicas == 4) {
            // evaluation batches are micro_batch sequences each: comparable only with the reference's micro_batch (2)
            assertClose(summary(reference, 0).get("last_val_loss").asDouble(),
                    summary(dir, 0).get("last_val_loss").asDouble(), 1e-9,
                    "final validation loss through the forward-only pipeline");
        }

        // each rank holds only its stage's parameters; together (the last stage's wte replica aside) the whole model
        long total = summary(reference, 0).get("optimizer_state_elements").asLong();
        long wte = 257L * 32;
        long sum = 0;
        // every step each stage sends M activations downstream or M gradients upstream: [8/D/M, 16, 32] float64 each
        long perStep = (8L / replicas) * 16 * 32 * 8;
        for (int s = 0; s < stages; s++) {
            JsonNode st = summary(dir, s * replicas);
            assertEquals(s, st.get("pipeline_stage").asInt());
            long held = st.get("stage_parameters").asLong();
            assertTrue(held < total, "stage " + s + " holds " + held + " of " + total + " parameters");
            sum += held;
            assertTrue(st.get("pipeline_bytes_sent").asLong() >= STEPS * perStep, "stage " + s + " sent "
                    + st.get("pipeline_bytes_sent") + " bytes over its links, expected >= " + STEPS * perStep);
        }
        assertEquals(total + wte, sum, "stage parameters add up to the model plus the last stage's wte replica");

        DpRuns.assertSameFinalParams(reference, referenceSets, dir, sets(dir, 2));
    }

    /** A checkpoint written by two stage processes resumes in one process: steps 3 and 4 repeat the reference's. */
    @Test
    void aPipelinedCheckpointResumesInOneProcessAndServesGenerate() throws Exception {
        Path resumed = tmp.resolve("resumed-from-p2");
        List<String> resumeSets = sets(resumed, 2);
        Cli cli = Cli.run(trainArgs(resumeSets, "--resume", twoStages1f1b.resolve("checkpoints/step-000002").toString())
                .toArray(String[]::new));
        assertEquals(0, cli.exitCode(), cli.toString());
        List<JsonNode> one = steps(reference, 0);
        List<JsonNode> after = steps(resumed, 0);
        assertEquals(2, after.size());
        for (int i = 0; i < 2; i++) {
            assertClose(one.get(2 + i).get("loss").asDouble(), after.get(i).get("loss").asDouble(), 1e-9,
                    "loss of step " + (3 + i) + " after resuming the 2-stage checkpoint in one process");
        }
        Cli gen = Cli.run("generate", "--checkpoint", twoStages1f1b.toString(), "--prompt", "The ", "--max-tokens", "8");
        assertEquals(0, gen.exitCode(), gen.toString());
        assertTrue(Files.isDirectory(twoStages1f1b.resolve("checkpoints/step-000004")));
    }

    /**
     * A stalled stage (SIGSTOP: alive, connected, silent) fails the job within the collective timeout: stage 0 gives
     * up waiting for it, naming it, and the launcher stops every worker and exits non-zero. No hang.
     */
    @Test
    void aStalledStageFailsTheJobWithinTheTimeoutNamingIt() throws Exception {
        Path run = tmp.resolve("stalled");
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "2", "--memory-per-worker", "768m",
                "--stop-grace", "2", "--env", "DTRAIN_COLLECTIVE_TIMEOUT=4s", "--"));
        args.addAll(trainArgs(microOverrides(run, 8, 400, "model.n_layer=4", "parallel.pipeline.stages=2")));
        java.util.concurrent.CompletableFuture<Cli> launched = java.util.concurrent.CompletableFuture.supplyAsync(
                () -> Cli.run(args.toArray(String[]::new)));
        long stoppedAt = 0;
        ProcessHandle stage1 = null;
        try {
            long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(120);
            while (!Files.exists(run.resolve("metrics/steps-rank1.jsonl"))
                    || Files.readAllLines(run.resolve("metrics/steps-rank1.jsonl")).size() < 2) {
                assertTrue(System.nanoTime() < deadline && !launched.isDone(), "no second step within 120 s"
                        + (launched.isDone() ? ":\n" + launched.get() : ""));
                Thread.sleep(100);
            }
            stage1 = DpFailureTest.workers().stream()
                    .filter(p -> DpFailureTest.commandLine(p).contains("-Ddtrain.rank=1")).findFirst().orElseThrow();
            stoppedAt = System.nanoTime();
            assertEquals(0, new ProcessBuilder("kill", "-STOP", Long.toString(stage1.pid())).start().waitFor());
            Cli cli = launched.get(60, java.util.concurrent.TimeUnit.SECONDS);
            double seconds = (System.nanoTime() - stoppedAt) / 1e9;
            assertTrue(cli.exitCode() != 0, cli.toString());
            assertTrue(seconds < 4 + 12, "the job took " + seconds + " s to fail after stage 1 stalled");
            String all = cli.out() + cli.err();
            assertTrue(all.contains("rank 1") && all.contains("no heartbeat"), all);
            assertTrue(DpFailureTest.workers().isEmpty(), "no worker outlives the launcher");
        } finally {
            if (stage1 != null) {
                stage1.destroyForcibly();
            }
            DpFailureTest.workers().forEach(ProcessHandle::destroyForcibly);
        }
    }
}
