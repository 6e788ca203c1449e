package io.dtrain.train.pp;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptModel;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.parallel.pipeline.Op;
import io.dtrain.parallel.pipeline.PipelineDeadlockException;
import io.dtrain.parallel.pipeline.PipelineSchedule;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.nativeblas.NativeOpsHolder;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The pipelined step equals the unpipelined model on the same global batch, whatever the schedule. */
class InProcessPipelineTest {
    private static final int VOCAB = 23;
    private static final int SEQ = 8;
    private static final int MICROBATCH_ROWS = 2;
    private static final long STEP = 3;
    private static final long DROPOUT_SEED = 1234;
    private static final double RELATIVE = 1e-9;

    private static final ModelConfig TIED_DROPOUT = new ModelConfig(VOCAB, SEQ, 16, 4, 2, 0, "pre", "gelu", 0.1, true,
            true, 0.1, 1e-5, "float64", "samediff");

    private static int[] savedThreads;
    private static GptModel reference;
    private static INDArray referenceParams;
    private static final Map<Integer, GptModel> pipelined = new HashMap<>();
    private static final Map<Integer, double[]> referenceLoss = new HashMap<>();
    private static final Map<Integer, INDArray> referenceGrads = new HashMap<>();

    @BeforeAll
    static void setUp() {
        // tiny graphs: one native thread avoids libnd4j's threads waiting for each other on a shared machine
        savedThreads = new int[] {Nd4j.getEnvironment().maxThreads(), Nd4j.getEnvironment().maxMasterThreads(),
                NativeOpsHolder.getInstance().getDeviceNativeOps().ompGetMaxThreads(), Nd4j.factory().blas().getMaxThreads()};
        setThreads(new int[] {1, 1, 1, 1});
        reference = new GptModel(TIED_DROPOUT);
        referenceParams = reference.newFlatBuffer();
        reference.initParams(referenceParams, 77);
        reference.setParams(referenceParams);
    }

    @AfterAll
    static void tearDown() {
        reference.close();
        pipelined.values().forEach(GptModel::close);
        setThreads(savedThreads);
    }

    private static void setThreads(int[] t) {
        Nd4j.getEnvironment().setMaxThreads(t[0]);
        Nd4j.getEnvironment().setMaxMasterThreads(t[1]);
        NativeOpsHolder.getInstance().getDeviceNativeOps().setOmpNumThreads(t[2]);
        Nd4j.factory().blas().setMaxThreads(t[3]);
    }

    private static GptModel pipelinedModel(int stages) {
        return pipelined.computeIfAbsent(stages, p -> {
            GptModel m = new GptModel(TIED_DROPOUT, GptModel.balancedPartition(TIED_DROPOUT, p));
            m.setParams(copyByName(referenceParams, reference.layout(), m));
            return m;
        });
    }

    /** The reference's parameters in another model's layout, matched by name (not by offset). */
    private static INDArray copyByName(INDArray from, ParamLayout fromLayout, GptModel to) {
        INDArray out = to.newFlatBuffer();
        for (ParamSpec s : to.layout().specs()) {
            to.layout().view(out, s.name()).assign(fromLayout.view(from, s.name()));
        }
        return out;
    }

    static int[][] windows(long seed, int rows) {
        SplittableRandom rng = new SplittableRandom(seed);
        int[][] w = new int[rows][SEQ + 1];
        for (int[] row : w) {
            for (int t = 0; t <= SEQ; t++) {
                row[t] = rng.nextInt(VOCAB);
            }
        }
        return w;
    }

    static long[] sampleIndices(int rows) {
        long[] s = new long[rows];
        for (int i = 0; i < rows; i++) {
            s[i] = 1000 + 7L * i;
        }
        return s;
    }

    /** Unpipelined forwardBackward of the whole global batch of M micro-batches (cached per M). */
    private static INDArray referenceGrads(int microbatches) {
        return referenceGrads.computeIfAbsent(microbatches, m -> {
            int rows = m * MICROBATCH_ROWS;
            INDArray grads = reference.newFlatBuffer();
            double loss = reference.forwardBackward(windows(m, rows), sampleIndices(rows), STEP, DROPOUT_SEED, grads);
            referenceLoss.put(m, new double[] {loss});
            return grads;
        });
    }

    @ParameterizedTest(name = "{0} P={1} M={2}")
    @CsvSource({"gpipe, 2, 1", "gpipe, 2, 4", "gpipe, 2, 8", "gpipe, 4, 1", "gpipe, 4, 4", "gpipe, 4, 8",
            "1f1b, 2, 1", "1f1b, 2, 4", "1f1b, 2, 8", "1f1b, 4, 1", "1f1b, 4, 4", "1f1b, 4, 8"})
    void lossGradientsAndPeakActivationsMatchTheUnpipelinedModel(String scheduleName, int stages, int microbatches) {
        PipelineSchedule schedule = PipelineSchedule.byName(scheduleName);
        GptModel model = pipelinedModel(stages);
        int rows = microbatches * MICROBATCH_ROWS;
        INDArray expected = referenceGrads(microbatches);
        double expectedLoss = referenceLoss.get(microbatches)[0];

        INDArray grads = model.newFlatBuffer();
        PipelineResult r = new InProcessPipeline(model).trainStep(schedule, microbatches, windows(microbatches, rows),
                sampleIndices(rows), STEP, DROPOUT_SEED, grads);

        assertEquals(expectedLoss, r.loss(), RELATIVE * expectedLoss, "loss");
        assertTrue(Math.abs(r.loss() - reference.loss(windows(microbatches, rows))) > 1e-4, "dropout is on");
        for (ParamSpec s : reference.layout().specs()) {
            INDArray want = reference.layout().view(expected, s.name());
            INDArray got = model.layout().view(grads, s.name());
            double scale = want.amaxNumber().doubleValue();
            double diff = got.sub(want).amaxNumber().doubleValue();
            assertTrue(scale > 0, s.name() + " has a zero gradient");
            assertTrue(diff <= RELATIVE * scale, s.name() + ": max difference " + diff + " vs max " + scale);
        }

        for (int rank = 0; rank < stages; rank++) {
            int want = "gpipe".equals(scheduleName) ? microbatches : Math.min(microbatches, stages - rank);
            assertEquals(want, r.peakLiveActivations()[rank], "peak live activation buffers on stage " + rank);
            assertTrue("gpipe".equals(scheduleName) || r.peakLiveActivations()[rank] <= stages);
        }
    }

    private static double scaleOf(INDArray flat, ParamLayout layout, String name) {
        return layout.view(flat, name).amaxNumber().doubleValue();
    }

    @Test
    void forwardOnlyEvaluationEqualsTheModelsLoss() {
        GptModel model = pipelinedModel(4);
        int[][] batch = windows(99, 8);
        PipelineResult r = new InProcessPipeline(model).evaluate(PipelineSchedule.forwardOnly().programs(4, 4), 4, batch);
        double expected = reference.loss(batch);
        assertEquals(expected, r.loss(), RELATIVE * expected);
        assertEquals(4, r.microbatches());
        for (int peak : r.peakLiveActivations()) {
            assertEquals(0, peak, "evaluation keeps no activations");
        }
    }

    @Test
    void untiedPostNormModelWithoutDropoutMatchesToo() {
        ModelConfig cfg = new ModelConfig(VOCAB, SEQ, 16, 3, 2, 0, "post", "relu", 0.0, false, true, 0.1, 1e-5, "float64", "samediff");
        try (GptModel single = new GptModel(cfg); GptModel split = new GptModel(cfg, new int[] {1, 1, 1})) {
            INDArray params = single.newFlatBuffer();
            single.initParams(params, 5);
            single.setParams(params);
            split.setParams(copyByName(params, single.layout(), split));
            int[][] batch = windows(7, 6);
            INDArray want = single.newFlatBuffer();
            double loss = single.forwardBackward(batch, sampleIndices(6), 1, 2, want);
            INDArray got = split.newFlatBuffer();
            PipelineResult r = new InProcessPipeline(split).trainStep(PipelineSchedule.oneForwardOneBackward(), 3, batch,
                    sampleIndices(6), 1, 2, got);
                assertEquals(loss, r.loss(), RELATIVE * loss);
            for (ParamSpec s : single.layout().specs()) {
                double scale = single.layout().view(want, s.name()).amaxNumber().doubleValue();
                double diff = split.layout().view(got, s.name()).sub(single.layout().view(want, s.name())).amaxNumber().doubleValue();
                assertTrue(diff <= RELATIVE * scale, s.name() + ": max difference " + diff + " vs max " + scale);
            }
            assertEquals(List.of(3, 2, 1), List.of(r.peakLiveActivations()[0], r.peakLiveActivations()[1], r.peakLiveActivations()[2]));
        }
    }

    @Test
    void badInputAndBadProgramsGiveClearErrors() {
        GptModel model = pipelinedModel(2);
        InProcessPipeline pipeline = new InProcessPipeline(model);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> pipeline.trainStep(
                PipelineSchedule.gpipe(), 4, windows(1, 6), sampleIndices(6), 1, 1, model.newFlatBuffer()));
        assertTrue(e.getMessage().contains("6 windows does not split into 4"), e.getMessage());
        int[][] bad = windows(1, 2);
        bad[1][3] = VOCAB;
        e = assertThrows(IllegalArgumentException.class, () -> pipeline.trainStep(
                PipelineSchedule.gpipe(), 1, bad, sampleIndices(2), 1, 1, model.newFlatBuffer()));
        assertTrue(e.getMessage().contains("window 1 position 3: token 23"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> pipeline.trainStep(
                PipelineSchedule.gpipe().programs(3, 1), 1, windows(1, 2), sampleIndices(2), 1, 1, model.newFlatBuffer()));
        assertTrue(e.getMessage().contains("programs for 3 stages, the model has 2"), e.getMessage());

        // stage 0 waits for a gradient before it has sent the activation stage 1 waits for
        List<List<Op>> crossed = List.of(
                List.of(Op.forward(0), Op.recvGrad(0, 1), Op.sendActivation(0, 1), Op.backward(0)),
                List.of(Op.recvActivation(0, 0), Op.forward(0), Op.backward(0), Op.sendGrad(0, 0)));
        PipelineDeadlockException d = assertThrows(PipelineDeadlockException.class, () -> pipeline.trainStep(
                crossed, 1, windows(1, 2), sampleIndices(2), 1, 1, model.newFlatBuffer()));
        assertTrue(d.getMessage().contains("stage 0 waits at op #1 recvGrad0<-1; stage 1 waits at op #0 recvAct0<-0"),
                d.getMessage());

        List<List<Op>> backwardWithoutGradient = List.of(
                List.of(Op.forward(0), Op.sendActivation(0, 1), Op.backward(0)),
                List.of(Op.recvActivation(0, 0), Op.forward(0), Op.backward(0), Op.sendGrad(0, 0)));
        IllegalStateException s = assertThrows(IllegalStateException.class, () -> pipeline.trainStep(
                backwardWithoutGradient, 1, windows(1, 2), sampleIndices(2), 1, 1, model.newFlatBuffer()));
        assertTrue(s.getMessage().contains("pipeline stage 0 op #2 B0: no received gradient of micro-batch 0"), s.getMessage());
    }
}
