package io.dtrain.train.pp;

import io.dtrain.data.loader.MicroBatch;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.GptModel;
import io.dtrain.parallel.pipeline.Op;
import io.dtrain.parallel.pipeline.PipelineDeadlockException;
import io.dtrain.parallel.pipeline.PipelineSchedule;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.ArrayList;
import java.util.List;

/**
 * Pipeline executor with every stage of a {@link GptModel} in this process: one {@link StageWorker} per stage,
 * driven round-robin by one thread (each runs until it waits for a message), messages over an
 * {@link InMemoryPipeTransport}. Deterministic, so it is the reference the multi-process executor is checked
 * against. It runs whatever op lists it is given; {@link PipelineSchedule} makes them.
 *
 * <p>The caller sets the model's parameters ({@link GptModel#setParams}) beforehand, as for
 * {@link GptModel#forwardBackward}.
 */
public final class InProcessPipeline {
    private final GptModel model;

    public InProcessPipeline(GptModel model) {
        this.model = model;
    }

    public PipelineResult trainStep(PipelineSchedule schedule, int microbatches, int[][] windows, long[] sampleIndices,
                                    long step, long dropoutSeed, INDArray flatGrads) {
        return trainStep(schedule.programs(model.numStages(), microbatches), microbatches, windows, sampleIndices,
                step, dropoutSeed, flatGrads);
    }

    /**
     * Forward and backward of a global batch split into {@code microbatches} equal micro-batches; leaves the
     * gradients of the mean loss over micro-batches in flatGrads, which holds zeros on entry (the micro-batches'
     * gradients add up, then are divided by their count). With equal micro-batches this is the gradient
     * {@link GptModel#forwardBackward} gives for the whole batch.
     *
     * @param programs per stage, its ops in order (index = stage)
     * @param windows  [B][seq_len + 1], B a multiple of microbatches
     */
    public PipelineResult trainStep(List<List<Op>> programs, int microbatches, int[][] windows, long[] sampleIndices,
                                    long step, long dropoutSeed, INDArray flatGrads) {
        if (flatGrads.length() != model.layout().size() || flatGrads.dataType() != model.dataType()) {
            throw new IllegalArgumentException("flat gradient buffer is " + flatGrads.dataType() + "[" + flatGrads.length()
                    + "], the model needs " + model.dataType() + "[" + model.layout().size() + "]");
        }
        List<MicroBatch> split = MicroBatch.split(checkWindows(windows), sampleIndices, microbatches);
        DropoutKeys[] keys = null;
        if (model.config().dropout() > 0.0) {
            keys = new DropoutKeys[microbatches];
            for (int m = 0; m < microbatches; m++) {
                keys[m] = new DropoutKeys(dropoutSeed, step, split.get(m).sampleIndices());
            }
        }
        return run(programs, split, keys, flatGrads);
    }

    /** Mean loss over micro-batches without dropout or gradients, e.g. with {@link PipelineSchedule#forwardOnly()}. */
    public PipelineResult evaluate(List<List<Op>> programs, int microbatches, int[][] windows) {
        long[] rows = new long[windows.length];
        return run(programs, MicroBatch.split(checkWindows(windows), rows, microbatches), null, null);
    }

    private PipelineResult run(List<List<Op>> programs, List<MicroBatch> microbatches, DropoutKeys[] keys, INDArray flatGrads) {
        int stages = model.numStages();
        if (programs.size() != stages) {
            throw new IllegalArgumentException("got programs for " + programs.size() + " stages, the model has " + stages);
        }
        int count = microbatches.size();
        InMemoryPipeTransport transport = new InMemoryPipeTransport();
        ActivationRegistry registry = new ActivationRegistry(stages);
        List<StageWorker> workers = new ArrayList<>(stages);
        for (int s = 0; s < stages; s++) {
            workers.add(new StageWorker(model, s, programs.get(s), microbatches, keys, flatGrads, transport, registry));
        }
        boolean allDone = false;
        while (!allDone) {
            boolean progressed = false;
            allDone = true;
            for (StageWorker w : workers) {
                while (w.tryStep()) {
                    progressed = true;
                }
                allDone &= w.done();
            }
            if (!allDone && !progressed) {
                throw new PipelineDeadlockException("pipeline deadlock: " + blocked(workers));
            }
        }
        for (StageWorker w : workers) {
            w.checkFinished();
        }
        if (transport.undelivered() != 0) {
            throw new IllegalStateException(transport.undelivered() + " pipeline messages were sent and never received");
        }
        StageWorker lastStage = workers.get(stages - 1);
        if (lastStage.lossCount() != count) {
            throw new IllegalStateException("the last stage computed the loss of " + lastStage.lossCount()
                    + " micro-batches, the step has " + count);
        }
        if (flatGrads != null && count > 1) {
            flatGrads.divi(count);   // the micro-batches' gradients were added up; the step's loss is their mean
        }
        return new PipelineResult(lastStage.lossSum() / count, count, registry.peaks());
    }

    private static String blocked(List<StageWorker> workers) {
        StringBuilder b = new StringBuilder();
        for (int s = 0; s < workers.size(); s++) {
            StageWorker w = workers.get(s);
            if (!w.done()) {
                b.append(b.length() == 0 ? "" : "; ").append("stage ").append(s).append(" waits at op #")
                        .append(w.programCounter()).append(' ').append(w.nextOp());
            }
        }
        return b.toString();
    }

    private int[][] checkWindows(int[][] windows) {
        int width = model.config().seqLen() + 1;
        int vocab = model.config().vocabSize();
        for (int b = 0; b < windows.length; b++) {
            if (windows[b].length != width) {
                throw new IllegalArgumentException("window " + b + " has " + windows[b].length
                        + " tokens, expected model.seq_len + 1 = " + width);
            }
            for (int t = 0; t < width; t++) {
                if (windows[b][t] < 0 || windows[b][t] >= vocab) {
                    throw new IllegalArgumentException("window " + b + " position " + t + ": token " + windows[b][t]
                            + " is outside [0, model.vocab_size=" + vocab + ")");
                }
            }
        }
        return windows;
    }
}
