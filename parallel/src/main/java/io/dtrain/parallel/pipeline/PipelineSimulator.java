package io.dtrain.parallel.pipeline;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A deterministic round-robin interpreter of all stages' programs: each stage runs until it blocks on a receive
 * whose message has not been sent, or on a send whose channel holds {@code channelCapacity} undelivered
 * messages. Channels are FIFO per (from, to, activation|gradient). When a whole round makes no progress and a
 * stage is unfinished, that is a deadlock.
 *
 * <p>It also enforces what a real executor needs locally (a forward has its received input, a backward its
 * forward and its received gradient, a send its computed tensor, a receive the micro-batch it names, neighbours
 * only), so a schedule that passes here cannot make the executor fail for want of data. Times: forward and
 * backward cost their given cost, communication is free; a receive starts no earlier than its send, a send into a
 * full channel no earlier than the receive that freed a slot.
 */
public final class PipelineSimulator {
    public static final int UNBOUNDED = Integer.MAX_VALUE;

    private PipelineSimulator() {
    }

    /** Unbounded channels, unit-cost forward and backward. */
    public static Simulation run(List<List<Op>> programs) {
        return run(programs, UNBOUNDED, 1.0, 1.0);
    }

    public static Simulation run(List<List<Op>> programs, int channelCapacity, double forwardCost, double backwardCost) {
        if (programs.isEmpty()) {
            throw new IllegalArgumentException("no stage programs to simulate");
        }
        if (channelCapacity < 1) {
            throw new IllegalArgumentException("channel capacity must be >= 1 (use UNBOUNDED for no limit), got " + channelCapacity);
        }
        return new Run(programs, channelCapacity, forwardCost, backwardCost).execute();
    }

    private record Message(int microbatch, double sentAt) {
    }

    private static final class Channel {
        final ArrayDeque<Message> queue = new ArrayDeque<>();
        final List<Double> receivedAt = new ArrayList<>();
        int sent;
    }

    private static final class StageState {
        final int rank;
        final List<Op> program;
        final BitSet withBackward = new BitSet();
        final BitSet forwarded = new BitSet();
        final BitSet backwarded = new BitSet();
        final BitSet activationReceived = new BitSet();
        final BitSet gradReceived = new BitSet();
        final BitSet activationSent = new BitSet();
        final BitSet gradSent = new BitSet();
        final List<TimedOp> timeline = new ArrayList<>();
        int pc;
        double clock;
        double busy;
        int inFlight;
        int peakInFlight;
        String blockedOn;

        StageState(int rank, List<Op> program) {
            this.rank = rank;
            this.program = program;
            for (Op op : program) {
                if (op.kind() == Op.Kind.BACKWARD) {
                    withBackward.set(op.microbatch());
                }
            }
        }

        boolean done() {
            return pc == program.size();
        }
    }

    private static final class Run {
        private final int stages;
        private final int capacity;
        private final double forwardCost;
        private final double backwardCost;
        private final StageState[] states;
        private final Map<String, Channel> channels = new HashMap<>();
        private final List<TimedOp> order = new ArrayList<>();

        Run(List<List<Op>> programs, int capacity, double forwardCost, double backwardCost) {
            this.stages = programs.size();
            this.capacity = capacity;
            this.forwardCost = forwardCost;
            this.backwardCost = backwardCost;
            this.states = new StageState[stages];
            for (int s = 0; s < stages; s++) {
                states[s] = new StageState(s, List.copyOf(programs.get(s)));
            }
        }

        Simulation execute() {
            while (true) {
                boolean progressed = false;
                boolean allDone = true;
                for (StageState st : states) {
                    while (!st.done() && step(st)) {
                        progressed = true;
                    }
                    allDone &= st.done();
                }
                if (allDone) {
                    break;
                }
                if (!progressed) {
                    throw new PipelineDeadlockException("pipeline deadlock: " + describeBlocked());
                }
            }
            for (Map.Entry<String, Channel> e : channels.entrySet()) {
                if (!e.getValue().queue.isEmpty()) {
                    throw new IllegalStateException("channel " + e.getKey() + " still holds micro-batches "
                            + e.getValue().queue.stream().map(Message::microbatch).toList() + " that no stage received");
                }
            }
            List<List<TimedOp>> timelines = new ArrayList<>();
            int[] peaks = new int[stages];
            double[] busy = new double[stages];
            double makespan = 0;
            for (StageState st : states) {
                timelines.add(Collections.unmodifiableList(st.timeline));
                peaks[st.rank] = st.peakInFlight;
                busy[st.rank] = st.busy;
                makespan = Math.max(makespan, st.clock);
            }
            return new Simulation(Collections.unmodifiableList(timelines), Collections.unmodifiableList(order), peaks, busy, makespan);
        }

        private String describeBlocked() {
            StringBuilder b = new StringBuilder();
            for (StageState st : states) {
                if (!st.done()) {
                    b.append(b.length() == 0 ? "" : "; ").append("stage ").append(st.rank).append(" waits at op #")
                            .append(st.pc).append(' ').append(st.program.get(st.pc)).append(" (").append(st.blockedOn).append(')');
                }
            }
            return b.toString();
        }

        /** Runs the stage's next op; false when it blocks. */
        private boolean step(StageState st) {
            Op op = st.program.get(st.pc);
            int m = op.microbatch();
            double start = st.clock;
            double end;
            switch (op.kind()) {
                case FORWARD -> {
                    require(st, op, !st.forwarded.get(m), "micro-batch " + m + " is forwarded twice");
                    require(st, op, st.rank == 0 || st.activationReceived.get(m),
                            "forward before its activation was received from stage " + (st.rank - 1));
                    end = start + forwardCost;
                    st.busy += forwardCost;
                    st.forwarded.set(m);
                    if (st.withBackward.get(m)) {
                        st.inFlight++;
                        st.peakInFlight = Math.max(st.peakInFlight, st.inFlight);
                    }
                }
                case BACKWARD -> {
                    require(st, op, !st.backwarded.get(m), "micro-batch " + m + " goes backward twice");
                    require(st, op, st.forwarded.get(m), "backward before the forward of the same micro-batch");
                    require(st, op, st.rank == stages - 1 || st.gradReceived.get(m),
                            "backward before its gradient was received from stage " + (st.rank + 1));
                    end = start + backwardCost;
                    st.busy += backwardCost;
                    st.backwarded.set(m);
                    st.inFlight--;
                }
                case SEND_ACTIVATION, SEND_GRAD -> {
                    boolean activation = op.kind() == Op.Kind.SEND_ACTIVATION;
                    int expectedPeer = activation ? st.rank + 1 : st.rank - 1;
                    require(st, op, op.peer() == expectedPeer && expectedPeer >= 0 && expectedPeer < stages,
                            (activation ? "activations" : "gradients") + " go to stage " + expectedPeer + " only");
                    BitSet sent = activation ? st.activationSent : st.gradSent;
                    require(st, op, !sent.get(m), "micro-batch " + m + " is sent twice");
                    require(st, op, activation ? st.forwarded.get(m) : st.backwarded.get(m),
                            "sends a tensor it has not computed yet");
                    Channel ch = channel(st.rank, op.peer(), activation);
                    if (ch.queue.size() >= capacity) {
                        st.blockedOn = "channel to stage " + op.peer() + " is full";
                        return false;
                    }
                    double slotFree = ch.sent >= capacity ? ch.receivedAt.get(ch.sent - capacity) : 0.0;
                    start = Math.max(start, slotFree);
                    end = start;
                    ch.queue.addLast(new Message(m, end));
                    ch.sent++;
                    sent.set(m);
                }
                case RECV_ACTIVATION, RECV_GRAD -> {
                    boolean activation = op.kind() == Op.Kind.RECV_ACTIVATION;
                    int expectedPeer = activation ? st.rank - 1 : st.rank + 1;
                    require(st, op, op.peer() == expectedPeer && expectedPeer >= 0 && expectedPeer < stages,
                            (activation ? "activations" : "gradients") + " come from stage " + expectedPeer + " only");
                    Channel ch = channel(op.peer(), st.rank, activation);
                    Message msg = ch.queue.peekFirst();
                    if (msg == null) {
                        st.blockedOn = "nothing sent yet by stage " + op.peer();
                        return false;
                    }
                    require(st, op, msg.microbatch() == m, "the next message from stage " + op.peer()
                            + " is micro-batch " + msg.microbatch() + ": sends and receives disagree on the order");
                    ch.queue.removeFirst();
                    start = Math.max(start, msg.sentAt());
                    end = start;
                    ch.receivedAt.add(end);
                    (activation ? st.activationReceived : st.gradReceived).set(m);
                }
                default -> throw new IllegalStateException("unknown op " + op);
            }
            TimedOp t = new TimedOp(order.size(), st.rank, st.pc, op, start, end);
            order.add(t);
            st.timeline.add(t);
            st.clock = end;
            st.pc++;
            st.blockedOn = null;
            return true;
        }

        private Channel channel(int from, int to, boolean activation) {
            return channels.computeIfAbsent((activation ? "activations " : "gradients ") + from + "->" + to, k -> new Channel());
        }

        private static void require(StageState st, Op op, boolean ok, String problem) {
            if (!ok) {
                throw new IllegalStateException("stage " + st.rank + " op #" + st.pc + " " + op + ": " + problem);
            }
        }
    }
}
