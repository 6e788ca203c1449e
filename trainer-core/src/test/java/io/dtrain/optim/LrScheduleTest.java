package io.dtrain.optim;

import io.dtrain.config.OptimizerConfig;
import io.dtrain.config.ScheduleConfig;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LrScheduleTest {
    static final double LR = 6e-4;
    static final double MIN = 6e-5;

    /** nanoGPT's get_lr (with llm.c's (it+1)/warmup warm-up), written independently. */
    static double nanoGptCosine(long it, long warmup, long decayIters) {
        if (it < warmup) {
            return LR * (it + 1) / warmup;
        }
        if (it > decayIters) {
            return MIN;
        }
        double decayRatio = (double) (it - warmup) / (decayIters - warmup);
        double coeff = 0.5 * (1.0 + Math.cos(Math.PI * decayRatio));
        return MIN + coeff * (LR - MIN);
    }

    @Test
    void warmupThenCosineMatchesTheFormulaAndLiteralValues() {
        LrSchedule s = new LrSchedule(LR, MIN, 10, LrSchedule.Decay.COSINE, 110);
        for (long step : new long[] {0, 1, 5, 9, 10, 11, 33, 60, 99, 109, 110, 111, 5000}) {
            assertEquals(nanoGptCosine(step, 10, 110), s.lr(step), 1e-18, "step " + step);
        }
        assertEquals(6e-5, s.lr(0), 1e-18);           // 6e-4 * 1/10
        assertEquals(3e-4, s.lr(4), 1e-18);           // 6e-4 * 5/10
        assertEquals(6e-4, s.lr(9), 1e-18);           // end of warm-up reaches the peak
        assertEquals(6e-4, s.lr(10), 1e-18);          // first decay step: cos(0) = 1
        assertEquals(3.3e-4, s.lr(60), 1e-18);        // half way: min + (lr - min) / 2
        assertEquals(6e-5 + 0.5 * (1 + Math.cos(Math.PI * 0.25)) * 5.4e-4, s.lr(35), 1e-18);
        assertEquals(6e-5, s.lr(110), 0.0);
        assertEquals(6e-5, s.lr(1_000_000), 0.0);
    }

    @Test
    void linearDecayEndsAtMinLrAndConstantDecayStaysAtThePeak() {
        LrSchedule lin = new LrSchedule(LR, MIN, 10, LrSchedule.Decay.LINEAR, 110);
        assertEquals(6e-4, lin.lr(10), 1e-18);
        assertEquals(3.3e-4, lin.lr(60), 1e-18);
        assertEquals(6e-5 + 0.75 * 5.4e-4, lin.lr(35), 1e-18);
        assertEquals(6e-5, lin.lr(110), 0.0);
        assertEquals(6e-5, lin.lr(200), 0.0);
        assertEquals(3e-4, lin.lr(4), 1e-18);

        LrSchedule constant = new LrSchedule(LR, MIN, 10, LrSchedule.Decay.CONSTANT, 110);
        assertEquals(3e-4, constant.lr(4), 1e-18);
        for (long step : new long[] {10, 60, 110, 10_000}) {
            assertEquals(LR, constant.lr(step), 0.0);
        }
    }

    @Test
    void noWarmupStartsAtThePeak() {
        LrSchedule s = new LrSchedule(LR, MIN, 0, LrSchedule.Decay.COSINE, 100);
        assertEquals(LR, s.lr(0), 0.0);
        assertEquals(3.3e-4, s.lr(50), 1e-18);
        assertEquals(MIN, s.lr(100), 0.0);
        // decay shorter than warm-up: min right after warm-up
        LrSchedule odd = new LrSchedule(LR, MIN, 10, LrSchedule.Decay.COSINE, 5);
        assertEquals(LR, odd.lr(9), 1e-18);
        assertEquals(MIN, odd.lr(10), 0.0);
    }

    @Test
    void fromConfigUsesTrainingStepsAndLrScaling() {
        OptimizerConfig opt = new OptimizerConfig(LR, MIN, 0.9, 0.95, 1e-8, 0.1, false, false, 1.0, "sqrt", false);
        LrSchedule s = LrSchedule.of(opt, new ScheduleConfig(10, "Cosine", 0), 110, 4);
        assertEquals(110, s.decaySteps());
        assertEquals(2 * LR, s.peakLr(), 1e-18);
        assertEquals(2 * MIN, s.minLr(), 1e-18);
        assertEquals(2 * 3.3e-4, s.lr(60), 1e-18);
        LrSchedule explicit = LrSchedule.of(opt, new ScheduleConfig(10, "linear", 50), 110, 1);
        assertEquals(50, explicit.decaySteps());
        assertEquals(LrSchedule.Decay.LINEAR, explicit.decay());
        assertEquals(8.0, LrSchedule.dataParallelScale("linear", 8), 0.0);
        assertEquals(1.0, LrSchedule.dataParallelScale("none", 8), 0.0);

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> LrSchedule.of(opt, new ScheduleConfig(10, "cosinus", 0), 100, 1));
        assertTrue(e.getMessage().contains("schedule.decay: unknown value 'cosinus'"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> LrSchedule.dataParallelScale("quadratic", 2));
        assertTrue(e.getMessage().contains("optimizer.lr_scaling"), e.getMessage());
    }
}
