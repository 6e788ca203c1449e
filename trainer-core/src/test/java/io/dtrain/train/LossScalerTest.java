package io.dtrain.train;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The dynamic loss scale on its own: halve on overflow, double after the interval, stop at the floor. */
class LossScalerTest {

    @Test
    void overflowHalvesTheScaleAndSkipsTheStep() {
        LossScaler s = new LossScaler(65536, 2000, 1);
        assertFalse(s.update(true, 1));
        assertEquals(32768, s.scale());
        assertEquals(0, s.goodSteps());
        assertTrue(s.update(false, 2));
        assertEquals(1, s.goodSteps());
        assertFalse(s.update(true, 3));
        assertEquals(16384, s.scale());
        assertEquals(0, s.goodSteps(), "an overflow restarts the growth interval");
    }

    @Test
    void scaleDoublesAfterTheGrowthIntervalOfCleanSteps() {
        LossScaler s = new LossScaler(1024, 3, 1);
        for (int i = 1; i <= 2; i++) {
            assertTrue(s.update(false, i));
            assertEquals(1024, s.scale());
        }
        assertTrue(s.update(false, 3));
        assertEquals(2048, s.scale());
        assertEquals(0, s.goodSteps());
        for (int i = 4; i <= 6; i++) {
            s.update(false, i);
        }
        assertEquals(4096, s.scale());
    }

    @Test
    void overflowAtTheFloorStopsWithAClearError() {
        LossScaler s = new LossScaler(4, 2000, 2);
        assertFalse(s.update(true, 7));
        assertEquals(2, s.scale());
        TrainingException e = assertThrows(TrainingException.class, () -> s.update(true, 8));
        assertEquals("step 8: the gradients overflow fp16 even at the minimum loss scale 2 (training.loss_scale.min);"
                + " the run diverged or its values exceed fp16's range: lower optimizer.lr, lower"
                + " training.loss_scale.min, or use training.precision: fp32", e.getMessage());
        LossScaler clamped = new LossScaler(3, 2000, 2);
        clamped.update(true, 1);
        assertEquals(2, clamped.scale(), "halving never goes below the floor");
    }

    @Test
    void noScalingInFp32AndStateRestores() {
        LossScaler none = LossScaler.none();
        assertFalse(none.enabled());
        assertEquals(1, none.scale());
        assertFalse(none.update(true, 1), "fp32: a non-finite gradient is not applied, the scale stays 1");
        assertEquals(1, none.scale());
        LossScaler s = new LossScaler(65536, 2000, 1);
        s.restore(512, 17);
        assertEquals(512, s.scale());
        assertEquals(17, s.goodSteps());
        assertThrows(IllegalArgumentException.class, () -> new LossScaler(1, 10, 2));
        assertEquals("65536", LossScaler.format(65536));
        assertEquals("0.5", LossScaler.format(0.5));
    }
}
