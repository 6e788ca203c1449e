package io.dtrain.train.pp;

import io.dtrain.data.loader.MicroBatch;
import io.dtrain.model.DropoutKeys;
import io.dtrain.model.GptModel;
import io.dtrain.model.Stage;
import io.dtrain.parallel.pipeline.Op;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs one stage's program for one optimizer step (or one evaluation), op by op. {@link #tryStep} never blocks:
 * it returns false when the next op is a receive whose message has not arrived, so a driver can interleave
 * several workers in one thread or poll a network transport.
 *
 * <p>Which micro-batches keep their activations follows from the program: a forward whose micro-batch has a
 * backward later stores its input in the {@link ActivationRegistry}; without one (evaluation) nothing is kept
 * and the last stage computes the loss at the forward. In training the last stage computes loss and gradients in
 * one pass at the backward, seeded with the model's loss scale alone (1 unless fp16): the gradients of the M
 * micro-batches add up in the fp32 flat buffer and are divided by M afterwards, as every other layout does, so fp16's
 * activation gradients are rounded at the same scale with or without a pipeline.
 */
public final class StageWorker {
    private final GptModel model;
    private final int stage;
    private final Stage graph;
    private final boolean first;
    private final boolean last;
    private final List<Op> program;
    private final BitSet withBackward = new BitSet();
    private final List<MicroBatch> microbatches;
    private final DropoutKeys[] keys;
    private final INDArray flatGrads;
    private final PipeTransport transport;
    private final ActivationRegistry registry;
    private final Map<Integer, INDArray> receivedActivations = new HashMap<>();
    private final Map<Integer, INDArray> receivedGrads = new HashMap<>();
    private final Map<Integer, INDArray> activationsToSend = new HashMap<>();
    private final Map<Integer, INDArray> gradsToSend = new HashMap<>();
    /** The last stage's inputs of micro-batches whose loss and backward run at their backward op. */
    private final Map<Integer, INDArray> lastStageInputs = new HashMap<>();
    /**
     * The stage's activation slot holding each micro-batch between its forward and backward. Slots are reused
     * (lowest free first), so a stage allocates as many activation sets as micro-batches are in flight at once
     * (at most P with 1F1B, M with GPipe), not one per micro-batch of the step.
     */
    private final Map<Integer, Integer> slotOf = new HashMap<>();
    private final java.util.BitSet slotsInUse = new java.util.BitSet();
    private int pc;
    private double lossSum;
    private int losses;

    /**
     * @param keys      dropout keys per micro-batch (the same objects on every stage), or null for no dropout
     * @param flatGrads gradient buffer this stage's parameter gradients are ADDED into; null when the program has
     *                  no backward
     */
    public StageWorker(GptModel model, int stage, List<Op> program, List<MicroBatch> microbatches, DropoutKeys[] keys,
                       INDArray flatGrads, PipeTransport transport, ActivationRegistry registry) {
        this.model = model;
        this.stage = stage;
        this.graph = model.stage(stage);
        this.first = stage == 0;
        this.last = stage == model.numStages() - 1;
        this.program = List.copyOf(program);
        this.microbatches = microbatches;
        this.keys = keys;
        this.flatGrads = flatGrads;
        this.transport = transport;
        this.registry = registry;
        for (Op op : this.program) {
            if (op.kind() == Op.Kind.BACKWARD) {
                withBackward.set(op.microbatch());
            }
        }
        if (!withBackward.isEmpty() && flatGrads == null) {
            throw new IllegalArgumentException("stage " + stage + "'s program has backward ops but no gradient buffer was given");
        }
    }

    public boolean done() {
        return pc == program.size();
    }

    /** The op the worker runs next (null when done): for a blocked worker, what it waits for. */
    public Op nextOp() {
        return done() ? null : program.get(pc);
    }

    public ActivationRegistry registry() {
        return registry;
    }

    public int programCounter() {
        return pc;
    }

    /** Runs the next op; false when done or when the next op is a receive whose message has not arrived. */
    public boolean tryStep() {
        if (done()) {
            return false;
        }
        Op op = program.get(pc);
        int m = op.microbatch();
        switch (op.kind()) {
            case FORWARD -> forward(op);
            case BACKWARD -> backward(op);
            case SEND_ACTIVATION -> transport.send(stage, op.peer(),
                    new PipeMessage(PipeMessage.Payload.ACTIVATION, m, take(activationsToSend, op, "computed activation")));
            case SEND_GRAD -> transport.send(stage, op.peer(),
                    new PipeMessage(PipeMessage.Payload.GRADIENT, m, take(gradsToSend, op, "computed input gradient")));
            case RECV_ACTIVATION, RECV_GRAD -> {
                PipeMessage msg = transport.receive(op.peer(), stage);
                if (msg == null) {
                    return false;
                }
                PipeMessage.Payload expected = op.kind() == Op.Kind.RECV_ACTIVATION
                        ? PipeMessage.Payload.ACTIVATION : PipeMessage.Payload.GRADIENT;
                if (msg.payload() != expected || msg.microbatch() != m) {
                    throw fail(op, "received " + msg.payload() + " of micro-batch " + msg.microbatch() + " from stage "
                            + op.peer() + ": the two stages' programs disagree on the order");
                }
                (expected == PipeMessage.Payload.ACTIVATION ? receivedActivations : receivedGrads).put(m, msg.tensor());
            }
            default -> throw fail(op, "unknown op");
        }
        pc++;
        return true;
    }

    private void forward(Op op) {
        int m = op.microbatch();
        MicroBatch mb = microbatch(op);
        INDArray x = first ? null : take(receivedActivations, op, "received activation");
        DropoutKeys k = keys == null ? null : keys[m];
        if (withBackward.get(m)) {
            registry.hold(stage, m);
            if (last) {
                // the last stage computes loss and gradients in one pass at its backward op: keep the input
                lastStageInputs.put(m, x);
            } else {
                int slot = slotsInUse.nextClearBit(0);
                slotsInUse.set(slot);
                slotOf.put(m, slot);
                activationsToSend.put(m, graph.forward(slot, mb.windows(), x, k).dup());
            }
        } else if (last) {
            lossSum += graph.loss(mb.windows(), x, k, 1.0, null);
            losses++;
        } else {
            activationsToSend.put(m, graph.forward(-1, mb.windows(), x, k).dup());
        }
    }

    private void backward(Op op) {
        int m = op.microbatch();
        MicroBatch mb = microbatch(op);
        DropoutKeys k = keys == null ? null : keys[m];
        registry.release(stage, m);
        INDArray gradInput;
        if (last) {
            lossSum += graph.loss(mb.windows(), lastStageInputs.remove(m), k, model.lossScale(), flatGrads);
            losses++;
            gradInput = graph.gradInput();
        } else {
            int slot = slotOf.remove(m);
            gradInput = graph.backward(slot, take(receivedGrads, op, "received gradient"), flatGrads);
            slotsInUse.clear(slot);
        }
        if (!first) {
            // a stage's returned arrays live until its next call; the send may come after another op
            gradsToSend.put(m, gradInput.dup());
        }
    }

    private MicroBatch microbatch(Op op) {
        if (op.microbatch() >= microbatches.size()) {
            throw fail(op, "the step has only " + microbatches.size() + " micro-batches");
        }
        return microbatches.get(op.microbatch());
    }

    private INDArray take(Map<Integer, INDArray> from, Op op, String what) {
        INDArray x = from.remove(op.microbatch());
        if (x == null) {
            throw fail(op, "no " + what + " of micro-batch " + op.microbatch() + " is at hand: the program runs this op"
                    + " before the op that provides it");
        }
        return x;
    }

    private IllegalStateException fail(Op op, String problem) {
        return new IllegalStateException("pipeline stage " + stage + " op #" + pc + " " + op + ": " + problem);
    }

    /** Sum of the micro-batch losses this (last) stage computed, and how many. */
    public double lossSum() {
        return lossSum;
    }

    public int lossCount() {
        return losses;
    }


    /** Throws when the finished program left tensors computed or received but never used. */
    public void checkFinished() {
        if (!done()) {
            throw new IllegalStateException("pipeline stage " + stage + " stopped at op #" + pc + " " + nextOp());
        }
        if (!receivedActivations.isEmpty() || !receivedGrads.isEmpty() || !activationsToSend.isEmpty() || !gradsToSend.isEmpty()) {
            throw new IllegalStateException("pipeline stage " + stage + " finished with unused tensors: received activations "
                    + receivedActivations.keySet() + ", received gradients " + receivedGrads.keySet() + ", unsent activations "
                    + activationsToSend.keySet() + ", unsent gradients " + gradsToSend.keySet());
        }
        if (registry.live(stage) != 0) {
            throw new IllegalStateException("pipeline stage " + stage + " finished holding " + registry.live(stage)
                    + " micro-batches' activations: a forward has no backward");
        }
    }}
