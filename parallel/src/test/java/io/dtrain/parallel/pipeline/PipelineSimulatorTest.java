package io.dtrain.parallel.pipeline;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PipelineSimulatorTest {
    private static final int MAX_STAGES = 8;
    private static final int MAX_MICROBATCHES = 32;

    @Test
    void everyMicrobatchGoesForwardThenBackwardThroughEveryStageOnce() {
        int runs = 0;
        for (PipelineSchedule schedule : List.of(PipelineSchedule.gpipe(), PipelineSchedule.oneForwardOneBackward())) {
            for (int capacity : new int[] {PipelineSimulator.UNBOUNDED, 1}) {
                for (int p = 1; p <= MAX_STAGES; p++) {
                    for (int m = 1; m <= MAX_MICROBATCHES; m++) {
                        String what = schedule.name() + " P=" + p + " M=" + m + " capacity=" + capacity;
                        Simulation sim = PipelineSimulator.run(schedule.programs(p, m), capacity, 1.0, 1.0);
                        checkOrdering(sim, p, m, true, what);
                        int[] inFlight = inFlightFromTrace(sim, p);
                        for (int rank = 0; rank < p; rank++) {
                            int expected = schedule == PipelineSchedule.gpipe() ? m : Math.min(m, p - rank);
                            assertEquals(expected, inFlight[rank], what + " rank " + rank + " peak activations");
                            assertEquals(expected, sim.peakInFlight()[rank], what + " rank " + rank + " simulator's count");
                            assertTrue(schedule == PipelineSchedule.gpipe() || inFlight[rank] <= p);
                        }
                        runs++;
                    }
                }
            }
        }
        assertEquals(2 * 2 * MAX_STAGES * MAX_MICROBATCHES, runs);
    }

    @Test
    void idealBubbleIsStagesMinusOneOverMicrobatchesPlusStagesMinusOne() {
        for (PipelineSchedule schedule : List.of(PipelineSchedule.gpipe(), PipelineSchedule.oneForwardOneBackward())) {
            for (int p = 1; p <= MAX_STAGES; p++) {
                for (int m = 1; m <= MAX_MICROBATCHES; m++) {
                    Simulation sim = PipelineSimulator.run(schedule.programs(p, m));
                    String what = schedule.name() + " P=" + p + " M=" + m;
                    assertEquals(2.0 * (m + p - 1), sim.makespan(), 1e-12, what + " makespan");
                    assertEquals((p - 1.0) / (m + p - 1.0), sim.bubbleFraction(), 1e-12, what + " bubble");
                }
            }
        }
        // backward twice as costly as forward (a real ratio): the bubble fraction is unchanged for both
        for (PipelineSchedule schedule : List.of(PipelineSchedule.gpipe(), PipelineSchedule.oneForwardOneBackward())) {
            Simulation sim = PipelineSimulator.run(schedule.programs(4, 8), PipelineSimulator.UNBOUNDED, 1.0, 2.0);
            assertEquals(3.0 * (8 + 4 - 1), sim.makespan(), 1e-12, schedule.name());
            assertEquals(3.0 / 11.0, sim.bubbleFraction(), 1e-12, schedule.name());
        }
    }

    @Test
    void forwardOnlyPassesEveryMicrobatchThroughInOrderAndKeepsNothing() {
        for (int p = 1; p <= MAX_STAGES; p++) {
            for (int m = 1; m <= MAX_MICROBATCHES; m += 7) {
                Simulation sim = PipelineSimulator.run(PipelineSchedule.forwardOnly().programs(p, m), 1, 1.0, 1.0);
                checkOrdering(sim, p, m, false, "forward-only P=" + p + " M=" + m);
                for (int rank = 0; rank < p; rank++) {
                    assertEquals(0, sim.peakInFlight()[rank]);
                }
                assertEquals(m + p - 1, sim.makespan(), 1e-12);
            }
        }
    }

    @Test
    void waitingForEachOtherIsReportedAsDeadlock() {
        List<List<Op>> programs = List.of(
                List.of(Op.recvGrad(0, 1), Op.forward(0), Op.sendActivation(0, 1), Op.backward(0)),
                List.of(Op.recvActivation(0, 0), Op.forward(0), Op.backward(0), Op.sendGrad(0, 0)));
        PipelineDeadlockException e = assertThrows(PipelineDeadlockException.class, () -> PipelineSimulator.run(programs));
        assertTrue(e.getMessage().contains("stage 0 waits at op #0 recvGrad0<-1"), e.getMessage());
        assertTrue(e.getMessage().contains("stage 1 waits at op #0 recvAct0<-0"), e.getMessage());
    }

    @Test
    void bothStagesSendingIntoFullChannelsDeadlock() {
        // stage 0 sends all four activations before receiving a gradient; stage 1 sends two gradients before
        // receiving the third activation: with room for one message per channel, both end up waiting on a send
        List<List<Op>> programs = List.of(
                List.of(Op.forward(0), Op.forward(1), Op.forward(2), Op.forward(3),
                        Op.sendActivation(0, 1), Op.sendActivation(1, 1), Op.sendActivation(2, 1), Op.sendActivation(3, 1),
                        Op.recvGrad(0, 1), Op.backward(0), Op.recvGrad(1, 1), Op.backward(1),
                        Op.recvGrad(2, 1), Op.backward(2), Op.recvGrad(3, 1), Op.backward(3)),
                List.of(Op.recvActivation(0, 0), Op.recvActivation(1, 0), Op.forward(0), Op.forward(1),
                        Op.backward(0), Op.backward(1), Op.sendGrad(0, 0), Op.sendGrad(1, 0),
                        Op.recvActivation(2, 0), Op.recvActivation(3, 0), Op.forward(2), Op.forward(3),
                        Op.backward(2), Op.backward(3), Op.sendGrad(2, 0), Op.sendGrad(3, 0)));
        Simulation unbounded = PipelineSimulator.run(programs);
        assertEquals(2, unbounded.peakInFlight()[1]);
        PipelineDeadlockException e = assertThrows(PipelineDeadlockException.class,
                () -> PipelineSimulator.run(programs, 1, 1.0, 1.0));
        assertTrue(e.getMessage().contains("stage 0 waits at op #7 sendAct3->1 (channel to stage 1 is full)"), e.getMessage());
        assertTrue(e.getMessage().contains("stage 1 waits at op #7 sendGrad1->0 (channel to stage 0 is full)"), e.getMessage());
        // a program that computes without its input is an error in the program, not a deadlock
        List<List<Op>> noInput = List.of(List.of(Op.forward(0)), List.of(Op.forward(0)));
        IllegalStateException bad = assertThrows(IllegalStateException.class, () -> PipelineSimulator.run(noInput));
        assertTrue(bad.getMessage().contains("stage 1 op #0 F0: forward before its activation was received"), bad.getMessage());
    }

    @Test
    void fullChannelBlocksTheSenderUntilTheReceiverCatchesUp() {
        // stage 1 receives micro-batch 1 only after its long backward of micro-batch 0 (cost 5, ends at t=7)
        List<List<Op>> programs = List.of(
                List.of(Op.forward(0), Op.sendActivation(0, 1), Op.forward(1), Op.sendActivation(1, 1),
                        Op.forward(2), Op.sendActivation(2, 1), Op.recvGrad(0, 1), Op.backward(0),
                        Op.recvGrad(1, 1), Op.backward(1), Op.recvGrad(2, 1), Op.backward(2)),
                List.of(Op.recvActivation(0, 0), Op.forward(0), Op.backward(0), Op.sendGrad(0, 0),
                        Op.recvActivation(1, 0), Op.forward(1), Op.backward(1), Op.sendGrad(1, 0),
                        Op.recvActivation(2, 0), Op.forward(2), Op.backward(2), Op.sendGrad(2, 0)));
        TimedOp unbounded = PipelineSimulator.run(programs, PipelineSimulator.UNBOUNDED, 1, 5).timelines().get(0).get(5);
        TimedOp bounded = PipelineSimulator.run(programs, 1, 1, 5).timelines().get(0).get(5);
        assertEquals(Op.sendActivation(2, 1), bounded.op());
        assertEquals(3.0, unbounded.start(), 0.0, "the send goes out as soon as F2 ends");
        assertEquals(7.0, bounded.start(), 0.0, "the send waits until stage 1 took micro-batch 1 off the channel");
    }

    @Test
    void receivingInAnotherOrderThanSentIsAnError() {
        List<List<Op>> programs = List.of(
                List.of(Op.forward(0), Op.sendActivation(0, 1), Op.forward(1), Op.sendActivation(1, 1)),
                List.of(Op.recvActivation(1, 0), Op.forward(1), Op.recvActivation(0, 0), Op.forward(0)));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> PipelineSimulator.run(programs));
        assertTrue(e.getMessage().contains("next message from stage 0 is micro-batch 0"), e.getMessage());
        List<List<Op>> skipsAStage = List.of(List.of(Op.forward(0), Op.sendActivation(0, 2)), List.of(), List.of());
        e = assertThrows(IllegalStateException.class, () -> PipelineSimulator.run(skipsAStage));
        assertTrue(e.getMessage().contains("go to stage 1 only"), e.getMessage());
        List<List<Op>> neverReceived = List.of(List.of(Op.forward(0), Op.sendActivation(0, 1)), List.of());
        e = assertThrows(IllegalStateException.class, () -> PipelineSimulator.run(neverReceived));
        assertTrue(e.getMessage().contains("no stage received"), e.getMessage());
    }

    /** Checks the dataflow order from the trace alone, independently of the simulator's own checks. */
    private static void checkOrdering(Simulation sim, int p, int m, boolean backward, String what) {
        TimedOp[][] fwd = new TimedOp[p][m];
        TimedOp[][] bwd = new TimedOp[p][m];
        for (int s = 0; s < p; s++) {
            for (TimedOp t : sim.timelines().get(s)) {
                assertEquals(s, t.stage());
                TimedOp[][] slot = switch (t.op().kind()) {
                    case FORWARD -> fwd;
                    case BACKWARD -> bwd;
                    default -> null;
                };
                if (slot != null) {
                    assertEquals(null, slot[s][t.op().microbatch()], what + ": " + t.op() + " twice on stage " + s);
                    slot[s][t.op().microbatch()] = t;
                }
            }
        }
        for (int s = 0; s < p; s++) {
            for (int mb = 0; mb < m; mb++) {
                String at = what + " stage " + s + " micro-batch " + mb;
                assertNotNull(fwd[s][mb], at + " never forwarded");
                if (s > 0) {
                    assertTrue(fwd[s][mb].sequence() > fwd[s - 1][mb].sequence(), at + ": forward before stage s-1's");
                    assertTrue(fwd[s][mb].start() >= fwd[s - 1][mb].end(), at + ": forward starts before its input exists");
                }
                if (!backward) {
                    assertEquals(null, bwd[s][mb], at + " has a backward");
                    continue;
                }
                assertNotNull(bwd[s][mb], at + " never backward");
                assertTrue(bwd[s][mb].sequence() > fwd[s][mb].sequence(), at + ": backward before forward");
                assertTrue(bwd[s][mb].start() >= fwd[s][mb].end(), at + ": backward starts before forward ends");
                if (s < p - 1) {
                    assertTrue(bwd[s][mb].sequence() > bwd[s + 1][mb].sequence(), at + ": backward before stage s+1's");
                    assertTrue(bwd[s][mb].start() >= bwd[s + 1][mb].end(), at + ": backward starts before its gradient exists");
                }
            }
        }
    }

    /** Peak number of micro-batches forwarded and not yet backward, per stage, read off the timelines. */
    private static int[] inFlightFromTrace(Simulation sim, int p) {
        int[] peak = new int[p];
        for (int s = 0; s < p; s++) {
            int live = 0;
            for (TimedOp t : sim.timelines().get(s)) {
                if (t.op().kind() == Op.Kind.FORWARD) {
                    peak[s] = Math.max(peak[s], ++live);
                } else if (t.op().kind() == Op.Kind.BACKWARD) {
                    live--;
                }
            }
            assertEquals(0, live);
        }
        return peak;
    }
}
