package io.dtrain.train;

import io.dtrain.config.ConfigException;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.data.loader.TokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The layout a run's step gets from its configuration and its place in the job. */
class TrainStepTest {

    static BatchLoader loader(RunConfig cfg) {
        TokenDataset train = TokenDatasets.load(cfg.data().train(), TrainTokenizer.forConfig(cfg), cfg.model().seqLen(),
                BadRecordPolicy.parse(cfg.data().onBadRecord()));
        return new BatchLoader(train, cfg.training().globalBatch(), cfg.microBatch(1), 0, 1, cfg.data().seed());
    }

    @Test
    void oneProcessGetsTheSingleProcessStep(@TempDir Path tmp) {
        RunConfig cfg = TrainerTest.micro(tmp);
        try (BatchLoader loader = loader(cfg);
             TrainStep step = TrainStep.create(cfg, RunContext.single(), loader, TrainerTest.QUIET)) {
            assertInstanceOf(SingleProcessStep.class, step);
            assertEquals(0, step.step());
            assertEquals(step.model().layout().size(), step.params().length());
        }
    }

    @Test
    void pipelineStagesInOneProcessAreRefusedNamingTheKey(@TempDir Path tmp) {
        RunConfig cfg = TrainerTest.micro(tmp, "parallel.pipeline.stages=2");
        try (BatchLoader loader = loader(cfg)) {
            ConfigException e = assertThrows(ConfigException.class,
                    () -> TrainStep.create(cfg, RunContext.single(), loader, TrainerTest.QUIET));
            assertEquals("parallel.pipeline.stages", e.key());
            assertTrue(e.getMessage().contains("dtrain launch --nproc-per-node 2"), e.getMessage());
        }
    }
}
