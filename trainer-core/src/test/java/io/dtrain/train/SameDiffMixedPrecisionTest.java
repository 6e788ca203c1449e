package io.dtrain.train;

import io.dtrain.config.RunConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * training.precision: fp16 on the SameDiff engine (the CUDA path), gpt-micro float32 on ND4J's CPU backend: the
 * fp32 loss curve within the stated tolerance, the fused engine's fp16 on the same batches within the stated
 * tolerance, and an overflow that skips the step with the state bitwise unchanged and halves the scale.
 */
class SameDiffMixedPrecisionTest {
    /**
     * SameDiff fp16 against SameDiff fp32, 30 steps of gpt-micro at lr 3e-3 (as MixedPrecisionTest). Measured: at
     * most 1.6e-4 nats (losses 5.47 -> 3.78), no overflow at 2^16.
     */
    static final double LOSS_TOLERANCE = MixedPrecisionTest.LOSS_TOLERANCE;
    /**
     * SameDiff fp16 against fused fp16 on the same batches: both round at the same points, so what differs is fp32
     * summation order and the few places README's "Mixed precision" lists. Measured: at most 1.3e-4 nats.
     */
    static final double ENGINE_TOLERANCE = 1e-3;

    static RunConfig micro(Path out, String engine, String... overrides) {
        String[] all = new String[overrides.length + 1];
        all[0] = "model.engine=" + engine;
        System.arraycopy(overrides, 0, all, 1, overrides.length);
        return MixedPrecisionTest.micro(out, all);
    }

    static List<StepStats> train(Path out, String engine, String... overrides) {
        try (Trainer t = new Trainer(micro(out, engine, overrides), RunContext.single(), TrainerTest.QUIET)) {
            return TrainerTest.run(t, 30);
        }
    }

    @Test
    void fp16FollowsTheFp32LossCurveAndTheFusedEnginesFp16(@TempDir Path tmp) {
        String[] o = {"training.steps=30", "optimizer.lr=3e-3"};
        List<StepStats> fp32 = train(tmp.resolve("a"), "samediff", o);
        List<StepStats> fp16 = train(tmp.resolve("b"), "samediff", concat(o, "training.precision=fp16"));
        List<StepStats> fused16 = train(tmp.resolve("c"), "fused", concat(o, "training.precision=fp16"));
        double worst = 0;
        double worstEngines = 0;
        for (int i = 0; i < 30; i++) {
            assertEquals(65536, fp16.get(i).lossScale());
            assertTrue(!fp16.get(i).skipped());
            worst = Math.max(worst, Math.abs(fp16.get(i).loss() - fp32.get(i).loss()));
            worstEngines = Math.max(worstEngines, Math.abs(fp16.get(i).loss() - fused16.get(i).loss()));
        }
        System.out.printf("samediff fp16 vs samediff fp32, gpt-micro, 30 steps: largest loss difference %.6f (loss %.4f"
                        + " -> %.4f); vs fused fp16 %.6f; median step %.2f ms fp32, %.2f ms fp16 (not asserted)%n", worst,
                fp32.get(0).loss(), fp32.get(29).loss(), worstEngines, MixedPrecisionTest.medianStepMs(fp32),
                MixedPrecisionTest.medianStepMs(fp16));
        assertTrue(worst <= LOSS_TOLERANCE, "largest |fp16 - fp32| loss difference " + worst);
        assertTrue(worst > 0, "fp16 must actually round something");
        assertTrue(worstEngines <= ENGINE_TOLERANCE, "largest |samediff - fused| fp16 loss difference " + worstEngines);
        assertTrue(fp16.get(29).loss() < fp16.get(0).loss() - 1.0, "fp16 learns");
    }

    @Test
    void overflowSkipsTheStepLeavingTheStateBitwiseUnchangedAndHalvesTheScale(@TempDir Path tmp) throws Exception {
        MixedPrecisionTest.assertOverflowSkipsTheStep(tmp, "samediff");
    }

    @Test
    void scaleGrowsAfterTheInterval(@TempDir Path tmp) {
        RunConfig grow = micro(tmp.resolve("a"), "samediff", "training.steps=5", "training.precision=fp16",
                "training.loss_scale.initial=1024", "training.loss_scale.growth_interval=2");
        try (Trainer t = new Trainer(grow, RunContext.single(), TrainerTest.QUIET)) {
            double[] scales = TrainerTest.run(t, 5).stream().mapToDouble(StepStats::lossScale).toArray();
            assertArrayEquals(new double[]{1024, 1024, 2048, 2048, 4096}, scales);
        }
    }

    /**
     * The fp16 graph split into pipeline stages, or into one-block parts recomputed in the backward pass
     * (training.recompute: blocks), gives the unsplit graph's fp16 gradients bit for bit: a boundary's rounding is
     * idempotent both ways.
     */
    @Test
    void stagesAndRecomputationGiveTheSameFp16Gradients(@TempDir Path tmp) {
        io.dtrain.config.ModelConfig cfg = micro(tmp, "samediff", "model.dropout=0.1").model();
        int[][] windows = new int[2][cfg.seqLen() + 1];
        java.util.Random random = new java.util.Random(3);
        for (int[] w : windows) {
            for (int t = 0; t < w.length; t++) {
                w[t] = random.nextInt(cfg.vocabSize());
            }
        }
        double[] whole = fp16Gradients(new io.dtrain.model.GptModel(cfg, new int[] {2}, false), windows);
        double[] staged = fp16Gradients(new io.dtrain.model.GptModel(cfg, new int[] {1, 1}, false), windows);
        double[] recomputed = fp16Gradients(new io.dtrain.model.GptModel(cfg, new int[] {2}, true), windows);
        assertArrayEquals(whole, staged, 0.0, "two pipeline stages");
        assertArrayEquals(whole, recomputed, 0.0, "block recomputation");
        assertTrue(java.util.Arrays.stream(whole).allMatch(Double::isFinite));
    }

    private static double[] fp16Gradients(io.dtrain.model.GptModel model, int[][] windows) {
        try (model) {
            model.setHalfPrecision(true);
            org.nd4j.linalg.api.ndarray.INDArray params = model.newFlatBuffer();
            org.nd4j.linalg.api.ndarray.INDArray grads = model.newFlatBuffer();
            model.initParams(params, 11);
            model.setParams(params);
            model.setLossScale(65536);
            model.forwardBackward(windows, new long[] {5, 9}, 0, 17, grads);
            return TrainerTest.values(grads);
        }
    }

    private static String[] concat(String[] a, String... b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
