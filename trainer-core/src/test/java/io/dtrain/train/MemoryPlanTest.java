package io.dtrain.train;

import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.model.GptModel;
import io.dtrain.model.fused.FusedStage;
import io.dtrain.plan.MemoryModel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The memory estimate of a run: equal to what the fused engine allocates, and the refusal it leads to. */
class MemoryPlanTest {
    private static final long GIB = 1L << 30;
    /** 8 GiB cap with 0.5 GiB in use, 20 GiB available, a 6 GiB heap: this repository's defaults on a 24 GB machine. */
    private static final MemoryLimits LIMITS = new MemoryLimits(8 * GIB, GIB / 2, 4 * GIB, 0, 6 * GIB, 20 * GIB, 1);

    private static RunConfig config(String file, String... overrides) {
        return ConfigLoader.load(Path.of("configs", file), List.of(overrides), TrainerTest.REPO);
    }

    /** After a step and an evaluation every activation set exists: the estimate is what was allocated, byte for byte. */
    @Test
    void theFusedEstimateIsWhatTheEngineAllocates(@TempDir Path tmp) {
        for (String[] run : new String[][] {{"1", "none"}, {"2", "none"}, {"2", "blocks"}}) {
            String segments = run[0];
            RunConfig cfg = config("gpt-micro.yaml", "output.dir=" + tmp.resolve(segments + run[1]), "training.steps=2",
                    "training.eval_interval=0", "training.checkpoint_interval=0", "model.dropout=0.1",
                    "parallel.dp.overlap_segments=" + segments, "training.recompute=" + run[1]);
            try (Trainer t = new Trainer(cfg, RunContext.single(), TrainerTest.QUIET)) {
                t.trainStep();
                t.evaluate();
                GptModel model = t.model();
                long allocated = 0;
                for (int s = 0; s < model.numStages(); s++) {
                    allocated += ((FusedStage) model.stage(s)).activationBytes();
                }
                MemoryPlan plan = t.memoryPlan();
                assertEquals(allocated, plan.activations(), "overlap segments " + segments + ", recompute " + run[1]);
                assertEquals(model.layout().size() * 4, plan.parameters());
                assertEquals(2 * model.layout().size() * 4, plan.optimizer());
                assertTrue(plan.data() > 265_258 * 2, "the packed train and val tokens: " + plan.data());
            }
        }
    }

    /** The issue's reproduction: GPT-2 small with micro-batches of 64 is refused with the numbers, by either engine. */
    @Test
    void aRunThatCannotFitIsRefusedWithTheNumbersAndTheKnobs() {
        for (String engine : new String[] {"fused", "samediff"}) {
            RunConfig cfg = config("gpt2-124m.yaml", "training.micro_batch=64", "model.engine=" + engine);
            MemoryPlan plan = MemoryPlan.of(cfg, RunContext.single(), 0);
            TrainingException e = assertThrows(TrainingException.class, () -> plan.check(LIMITS));
            String m = e.getMessage();
            assertTrue(m.startsWith("this run does not fit in memory: it needs about "), m);
            assertTrue(m.contains("parameters 474.7MiB + gradients 474.7MiB + AdamW state 949.4MiB"), m);
            assertTrue(m.contains(engine + " engine") && m.contains("micro-batches of 64 sequences"), m);
            assertTrue(m.contains("but javacpp.maxphysicalbytes 8.0GiB"), m);
            assertTrue(m.matches(".*lower training\\.micro_batch \\(\\d+ fits: about [0-9.]+GiB.*"), m);
            assertTrue(m.contains("parallel.pipeline.stages") && m.contains("-Dorg.bytedeco.javacpp.maxphysicalbytes"), m);
            assertEquals(1, m.lines().count());
        }
    }

    @Test
    void pipelineStagesHoldWhatTheirScheduleKeepsInFlight() {
        assertEquals(4, MemoryModel.inFlight("1f1b", 4, 8, 0));
        assertEquals(1, MemoryModel.inFlight("1f1b", 4, 8, 3));
        assertEquals(8, MemoryModel.inFlight("gpipe", 4, 8, 0));
        assertEquals(2, MemoryModel.inFlight("1f1b", 4, 2, 0), "never more than the step's micro-batches");
    }

    @Test
    void runningOutOfMemoryAnywayIsTheSameOneLine() {
        RunConfig cfg = config("gpt-tiny.yaml");
        MemoryPlan plan = MemoryPlan.of(cfg, RunContext.single(), 0);
        OutOfMemoryError javacpp = new OutOfMemoryError("Physical memory usage is too high: physicalBytes (10733M) >"
                + " maxPhysicalBytes (8192M)");
        RuntimeException nd4j = new RuntimeException("Failed to allocate 4096 bytes", javacpp);
        assertTrue(MemoryPlan.isOutOfMemory(nd4j) && MemoryPlan.isOutOfMemory(javacpp));
        assertTrue(!MemoryPlan.isOutOfMemory(new IllegalStateException("shape mismatch")));
        TrainingException e = plan.outOfMemory(nd4j, "at step 5", LIMITS);
        assertTrue(e.getMessage().startsWith("out of memory at step 5 (Failed to allocate 4096 bytes); the estimate was"
                + " about "), e.getMessage());
        assertTrue(e.getMessage().contains("against javacpp.maxphysicalbytes 8.0GiB"), e.getMessage());
        assertTrue(e.getMessage().contains("-Dorg.bytedeco.javacpp.maxphysicalbytes"), e.getMessage());

        TrainingException heap = plan.outOfMemory(new OutOfMemoryError("Java heap space"), "while reading the data", LIMITS);
        assertEquals("out of memory while reading the data (Java heap space): the Java heap (-Xmx 6.0GiB) that holds"
                + " the data read into memory is full; preprocess the data (dtrain preprocess: memory-mapped shards, off"
                + " the heap) or raise -Xmx (DTRAIN_JAVA_OPTS)", heap.getMessage());
    }
}
