package io.dtrain.train;

import io.dtrain.config.RunConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A whole training run gives the same losses with the fused engine as with the SameDiff engine. */
class EngineEquivalenceTest {
    /** 20 float32 steps (dropout on, 2 micro-batches per step, AdamW, clipping): the same loss at every step. */
    @Test
    void twentyFloat32StepsMatchTheSameDiffRunStepByStep(@TempDir Path tmp) {
        String[] common = {"model.dtype=float32", "training.steps=20", "model.dropout=0.1", "training.global_batch=8",
                "training.micro_batch=4", "schedule.warmup_steps=4"};
        List<StepStats> samediff = run(tmp.resolve("samediff"), "samediff", common);
        List<StepStats> fused = run(tmp.resolve("fused"), "fused", common);
        for (int i = 0; i < 20; i++) {
            double want = samediff.get(i).loss();
            assertEquals(want, fused.get(i).loss(), 1e-5, "loss of step " + (i + 1));
            assertEquals(samediff.get(i).gradNorm(), fused.get(i).gradNorm(), 1e-4 * samediff.get(i).gradNorm(),
                    "grad norm of step " + (i + 1));
        }
        assertTrue(samediff.get(19).loss() < samediff.get(0).loss() - 0.5, "the run learns");
    }

    private static List<StepStats> run(Path out, String engine, String... overrides) {
        String[] all = java.util.Arrays.copyOf(overrides, overrides.length + 1);
        all[overrides.length] = "model.engine=" + engine;
        RunConfig cfg = TrainerTest.micro(out, all);
        try (Trainer t = new Trainer(cfg, RunContext.single(), TrainerTest.QUIET)) {
            assertEquals(engine, t.model().engine());
            return TrainerTest.run(t, 20);
        }
    }
}
