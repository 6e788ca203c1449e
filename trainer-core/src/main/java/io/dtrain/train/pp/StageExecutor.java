package io.dtrain.train.pp;

import io.dtrain.data.loader.MicroBatch;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.GptModel;
import io.dtrain.parallel.pipeline.Op;
import io.dtrain.parallel.pipeline.PipelineSchedule;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.List;

/**
 * Runs this process's pipeline stage: a {@link StageWorker} over a {@link PeerPipeTransport}, one op after the
 * other, waiting (with the collective timeout) whenever the next op is a receive whose message has not arrived.
 * The time spent waiting is the stage's bubble.
 */
public final class StageExecutor {
    private final GptModel model;
    private final int stage;
    private final PipelineSchedule schedule;
    private final PeerPipeTransport transport;

    /** What one step (or evaluation) did on this stage. */
    public record StageResult(double lossSum, int losses, long idleNanos, long totalNanos, int peakLiveActivations) {
    }

    private record Program(int count, List<Op> ops) {
    }

    private Program trainProgram;

    public StageExecutor(GptModel model, int stage, PipelineSchedule schedule, PeerPipeTransport transport) {
        this.model = model;
        this.stage = stage;
        this.schedule = schedule;
        this.transport = transport;
    }

    /**
     * Forward and backward of M micro-batches through this stage; leaves this stage's gradients of the mean loss
     * over micro-batches in flatGrads, which holds zeros on entry (their sum, then divided by M) (on the last stage of a tied model, the LM head's part goes into the wte
     * replica's slot). Only the last stage gets losses.
     */
    public StageResult trainStep(List<MicroBatch> microbatches, long step, long dropoutSeed, INDArray flatGrads) {
        int count = microbatches.size();
        DropoutKeys[] keys = null;
        if (model.config().dropout() > 0.0) {
            keys = new DropoutKeys[count];
            for (int m = 0; m < count; m++) {
                keys[m] = new DropoutKeys(dropoutSeed, step, microbatches.get(m).sampleIndices());
            }
        }
        if (trainProgram == null || trainProgram.count() != count) {
            // a pure function of (P, M, stage): the same list every step
            trainProgram = new Program(count, schedule.ops(model.numStages(), count, stage));
        }
        StageWorker worker = new StageWorker(model, stage, trainProgram.ops(), microbatches, keys, flatGrads, transport,
                new ActivationRegistry(model.numStages()));
        StageResult result = run(worker);
        if (count > 1) {
            flatGrads.divi(count);
        }
        return result;
    }

    /** Forward-only pass of micro-batches without dropout (evaluation); the last stage sums their mean losses. */
    public StageResult evaluate(List<MicroBatch> microbatches) {
        List<Op> program = PipelineSchedule.forwardOnly().ops(model.numStages(), microbatches.size(), stage);
        return run(new StageWorker(model, stage, program, microbatches, null, null, transport,
                new ActivationRegistry(model.numStages())));
    }

    private StageResult run(StageWorker worker) {
        ActivationRegistry registry = worker.registry();
        long start = System.nanoTime();
        long idle = 0;
        while (!worker.done()) {
            if (!worker.tryStep()) {
                Op waitingFor = worker.nextOp();
                long w0 = System.nanoTime();
                transport.await(waitingFor.peer(), (waitingFor.kind() == Op.Kind.RECV_ACTIVATION ? "the activation"
                        : "the gradient") + " of micro-batch " + waitingFor.microbatch() + " (stage " + stage + " op #"
                        + worker.programCounter() + ")");
                idle += System.nanoTime() - w0;
            }
        }
        worker.checkFinished();
        return new StageResult(worker.lossSum(), worker.lossCount(), idle, System.nanoTime() - start,
                registry.peak(stage));
    }
}
