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
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * fp16 mixed precision with data parallelism over real worker processes ({@code dtrain launch}, 2 ranks) equals one
 * process training on the same global batch (gpt-micro float32, dropout 0.1), on each engine: every micro-batch is
 * computed alike, so only the fp32 summation order of the gradients differs (two partial sums averaged by the
 * AllReduce against one sequential sum). The loss scale starts where the first step's gradients overflow fp16, so
 * both ranks must skip that step together and halve the scale as the single process does.
 */
class DpMixedPrecisionTest {
    static final int STEPS = 4;
    /**
     * Relative tolerance on losses and gradient norms. Measured (4 steps, 2 cores): at most 9.4e-10 (fused) and
     * 5.1e-10 (SameDiff); the margin covers other core counts, which split the GEMMs' sums differently.
     */
    static final double TOLERANCE = 1e-7;
    /**
     * Absolute tolerance on the final parameters: 0.5% of one AdamW step (lr 1e-2). Measured: 5.9e-6 fused, 6.0e-6
     * SameDiff (3.8e-7 and 8.2e-8 before attention was rounded too). fp16 amplifies the fp32 summation-order
     * differences: a master weight a few ulps off can round to the neighbouring half, and AdamW normalises the
     * difference that makes in a near-zero gradient.
     */
    static final double PARAM_TOLERANCE = 5e-5;

    @TempDir
    static Path tmp;

    @Test
    void fusedTwoRanksEqualOneRankOnTheSameGlobalBatch() {
        assertEquivalent("fused");
    }

    @Test
    void sameDiffTwoRanksEqualOneRankOnTheSameGlobalBatch() {
        assertEquivalent("samediff");
    }

    /**
     * The layout of the GPU configuration (gpt-1.3b-p3): SameDiff pipeline stages, 1F1B, in fp16. Its stages add up
     * the micro-batches' gradients and divide the fp32 sum by M afterwards, as the other layouts do, so fp16 meets the
     * same scaled gradients: the first step overflows at the same scale as in one process.
     */
    @Test
    void sameDiffPipelineOfTwoStagesEqualsOneProcess() {
        assertEquivalent("samediff", "parallel.pipeline.stages=2", "parallel.pipeline.schedule=1f1b");
    }

    /** 2 launched ranks (data parallel, or as {@code layout} sets) against one process, same global batch. */
    static void assertEquivalent(String engine, String... layout) {
        String name = engine + (layout.length > 0 ? "-pipeline" : "");
        Path oneDir = tmp.resolve(name + "-one");
        Path twoDir = tmp.resolve(name + "-two");
        // 2^22: at initialisation |dL/dlogits| x scale = 2^22 / 32 rows x ~1 overflows fp16's 65504 on the first step
        String[] fp16 = {"model.dtype=float32", "model.engine=" + engine, "training.precision=fp16",
                "training.loss_scale.initial=4194304"};
        List<String> setsOne = microOverrides(oneDir, 8, STEPS, fp16);
        List<String> setsTwo = new ArrayList<>(microOverrides(twoDir, 8, STEPS, fp16));
        setsTwo.addAll(List.of(layout));
        Cli one = Cli.run(trainArgs(setsOne).toArray(String[]::new));
        assertEquals(0, one.exitCode(), one.toString());
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "2", "--memory-per-worker", "1g",
                "--stop-grace", "2", "--"));
        args.addAll(trainArgs(setsTwo));
        Cli two = Cli.run(args.toArray(String[]::new));
        assertEquals(0, two.exitCode(), two.toString());
        assertTrue(two.out().contains("step 1: fp16 gradients overflowed at loss scale 4194304; update skipped, loss"
                + " scale now 2097152"), two.out());

        List<JsonNode> single = steps(oneDir, 0);
        assertTrue(single.get(0).get("skipped").asBoolean(), "the first step overflows");
        assertTrue(!single.get(STEPS - 1).get("skipped").asBoolean(), "a later step trains");
        double worst = 0;
        for (int r = 0; r < 2; r++) {
            List<JsonNode> dp = steps(twoDir, r);
            assertEquals(STEPS, dp.size(), "steps recorded by rank " + r);
            for (int i = 0; i < STEPS; i++) {
                String what = engine + " step " + (i + 1) + " on rank " + r;
                assertEquals(single.get(i).get("skipped").asBoolean(), dp.get(i).get("skipped").asBoolean(), what);
                assertEquals(single.get(i).get("loss_scale").asDouble(), dp.get(i).get("loss_scale").asDouble(), 0.0, what);
                for (String field : new String[] {"loss", "grad_norm"}) {
                    double a = single.get(i).get(field).asDouble();
                    double b = dp.get(i).get(field).asDouble();
                    if (Double.isFinite(a) || Double.isFinite(b)) {
                        assertClose(a, b, TOLERANCE, field + " of " + what);
                        worst = Math.max(worst, Math.abs(a - b) / Math.max(Math.abs(a), 1e-12));
                    }
                }
            }
        }
        double[] p1 = finalParams(oneDir, setsOne);
        double[] p2 = finalParams(twoDir, setsTwo);
        double worstParam = 0;
        for (int i = 0; i < p1.length; i++) {
            worstParam = Math.max(worstParam, Math.abs(p1[i] - p2[i]));
        }
        System.out.printf("fp16 %s, 2 ranks vs 1: largest relative loss/norm difference %.2e, largest parameter"
                + " difference %.2e%n", name, worst, worstParam);
        assertTrue(worstParam <= PARAM_TOLERANCE, engine + ": final parameters differ by up to " + worstParam);
    }
}
