package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static io.dtrain.launcher.DpRuns.JSON;
import static io.dtrain.launcher.DpRuns.microOverrides;
import static io.dtrain.launcher.DpRuns.steps;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Bucketed, overlapped data parallelism (gpt-micro split into 2 stage graphs per process, buckets of 0.02 MiB so
 * each stage has several) equals one process with one stage graph within 1e-9 (float64, dropout), and the trace
 * shows the later stage's bucket AllReduces starting before the backward pass of the step has finished.
 */
class DpOverlapTest {
    static final int STEPS = 3;
    @TempDir
    static Path tmp;
    static Path oneRank;
    static Path twoRanks;
    static List<String> setsOne;
    static List<String> setsTwo;

    @BeforeAll
    static void train() {
        oneRank = tmp.resolve("one");
        twoRanks = tmp.resolve("two-overlapped");
        setsOne = microOverrides(oneRank, 8, STEPS);
        setsTwo = microOverrides(twoRanks, 8, STEPS, "parallel.dp.overlap_segments=2", "parallel.dp.bucket_mb=0.02",
                "metrics.trace=true");
        Cli one = Cli.run(trainArgs(setsOne).toArray(String[]::new));
        assertEquals(0, one.exitCode(), one.toString());
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "2", "--memory-per-worker", "1g",
                "--stop-grace", "2", "--"));
        args.addAll(trainArgs(setsTwo));
        Cli two = Cli.run(args.toArray(String[]::new));
        assertEquals(0, two.exitCode(), two.toString());
    }

    @Test
    void bucketedOverlappedTwoRanksEqualOneRank() {
        assertEquals(STEPS, steps(oneRank, 0).size());
        for (int r = 0; r < 2; r++) {
            List<JsonNode> one = steps(oneRank, 0);
            List<JsonNode> dp = steps(twoRanks, r);
            assertEquals(STEPS, dp.size());
            for (int i = 0; i < STEPS; i++) {
                DpRuns.assertClose(one.get(i).get("loss").asDouble(), dp.get(i).get("loss").asDouble(), 1e-9,
                        "loss of step " + (i + 1) + " on rank " + r);
                DpRuns.assertClose(one.get(i).get("grad_norm").asDouble(), dp.get(i).get("grad_norm").asDouble(), 1e-9,
                        "gradient norm of step " + (i + 1) + " on rank " + r);
                // Exposed communication: two ranks always wait for the last bucket and the loss, and the wait is
                // disjoint from the other phases (the overlapped part of the AllReduce is not counted again).
                JsonNode s = dp.get(i);
                double comm = s.get("comm_ms").asDouble();
                assertTrue(comm > 0, "rank " + r + " step " + (i + 1) + ": comm_ms " + comm);
                double phases = s.get("data_wait_ms").asDouble() + s.get("compute_ms").asDouble()
                        + s.get("optimizer_ms").asDouble() + comm;
                assertTrue(phases <= s.get("step_ms").asDouble() + 0.01, "rank " + r + " step " + (i + 1)
                        + ": data wait + compute + optimizer + exposed communication = " + phases
                        + " ms exceed the step's " + s.get("step_ms").asDouble() + " ms");
            }
            long buffer = DpRuns.summary(twoRanks, r).get("gradient_buffer_bytes").asLong();
            // One host, gradients in shared memory: a bucket above 16 KiB is reduced in place (each rank writes its
            // half of the result into the other's buffer), a smaller one copied through the exchange (all of it).
            double expected = buffer * STEPS;
            double sent = DpRuns.summary(twoRanks, r).get("gradient_allreduce_bytes_sent").asLong();
            assertTrue(sent > expected / 2 * 0.98 && sent < expected * 1.03, "rank " + r + " sent " + sent
                    + " bytes in gradient buckets, expected between " + expected / 2 + " and " + expected);
        }
        DpRuns.assertSameFinalParams(oneRank, setsOne, twoRanks, setsTwo);
    }

    @Test
    void laterStageBucketsStartBeforeTheBackwardPassEnds() throws IOException {
        for (int r = 0; r < 2; r++) {
            List<JsonNode> events = trace(twoRanks.resolve("metrics/trace-rank" + r + ".json"));
            int stepsSeen = 0;
            for (JsonNode step : events) {
                if (!step.path("name").asText().startsWith("step ") || !"X".equals(step.path("ph").asText())) {
                    continue;
                }
                double start = step.get("ts").asDouble();
                double end = start + step.get("dur").asDouble();
                double backwardEnd = Double.NEGATIVE_INFINITY;
                double firstLaterStageBucket = Double.POSITIVE_INFINITY;
                int stage0Buckets = 0;
                int stage1Buckets = 0;
                for (JsonNode e : events) {
                    double ts = e.path("ts").asDouble(Double.NaN);
                    if (!(ts >= start && ts <= end)) {
                        continue;
                    }
                    String name = e.path("name").asText();
                    if (name.equals("forward_backward")) {
                        backwardEnd = Math.max(backwardEnd, ts + e.get("dur").asDouble());
                    } else if (name.startsWith("allreduce bucket") && name.endsWith("(stage 1)")) {
                        stage1Buckets++;
                        firstLaterStageBucket = Math.min(firstLaterStageBucket, ts);
                    } else if (name.startsWith("allreduce bucket") && name.endsWith("(stage 0)")) {
                        stage0Buckets++;
                    }
                }
                assertTrue(stage0Buckets > 1 && stage1Buckets > 1, step.get("name").asText() + " on rank " + r
                        + ": several buckets per stage (" + stage0Buckets + ", " + stage1Buckets + ")");
                assertTrue(firstLaterStageBucket < backwardEnd, step.get("name").asText() + " on rank " + r
                        + ": stage 1's first bucket started at " + firstLaterStageBucket + " us, the backward ended at "
                        + backwardEnd + " us");
                stepsSeen++;
            }
            assertEquals(STEPS, stepsSeen, "steps traced by rank " + r);
        }
    }

    /** The trace is a JSON array whose closing bracket may be missing (a crashed run's file still loads). */
    private static List<JsonNode> trace(Path file) throws IOException {
        String text = Files.readString(file).strip();
        if (text.endsWith(",")) {
            text = text.substring(0, text.length() - 1);
        }
        if (!text.endsWith("]")) {
            text = text + "]";
        }
        List<JsonNode> out = new ArrayList<>();
        JSON.readTree(text).forEach(out::add);
        return out;
    }
}
