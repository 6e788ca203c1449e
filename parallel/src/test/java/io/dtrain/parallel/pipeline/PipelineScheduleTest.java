package io.dtrain.parallel.pipeline;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PipelineScheduleTest {

    /** Compute ops only, e.g. "F0 F1 B0". */
    private static String compute(List<Op> ops) {
        StringBuilder b = new StringBuilder();
        for (Op op : ops) {
            if (op.isCompute()) {
                b.append(b.length() == 0 ? "" : " ").append(op);
            }
        }
        return b.toString();
    }

    @Test
    void oneForwardOneBackwardOnFourStagesMatchesMegatron() {
        PipelineSchedule s = PipelineSchedule.oneForwardOneBackward();
        assertEquals("F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5", compute(s.ops(4, 6, 0)));
        assertEquals("F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5", compute(s.ops(4, 6, 1)));
        assertEquals("F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5", compute(s.ops(4, 6, 3)));
        // fewer micro-batches than the warm-up wants: all forwards, then all backwards
        assertEquals("F0 F1 B0 B1", compute(s.ops(4, 2, 0)));
        assertEquals(List.of(Op.recvActivation(0, 0), Op.forward(0), Op.sendActivation(0, 2),
                        Op.recvActivation(1, 0), Op.forward(1), Op.sendActivation(1, 2),
                        Op.recvGrad(0, 2), Op.backward(0), Op.sendGrad(0, 0),
                        Op.recvActivation(2, 0), Op.forward(2), Op.sendActivation(2, 2),
                        Op.recvGrad(1, 2), Op.backward(1), Op.sendGrad(1, 0),
                        Op.recvGrad(2, 2), Op.backward(2), Op.sendGrad(2, 0)),
                s.ops(3, 3, 1));
    }

    @Test
    void warmupIsStagesMinusRankMinusOneForwards() {
        PipelineSchedule s = PipelineSchedule.oneForwardOneBackward();
        for (int p = 1; p <= 8; p++) {
            for (int m = 1; m <= 32; m++) {
                for (int rank = 0; rank < p; rank++) {
                    List<Op> ops = s.ops(p, m, rank);
                    int warmup = Math.min(p - rank - 1, m);
                    StringBuilder expected = new StringBuilder();
                    for (int i = 0; i < warmup; i++) {
                        expected.append(" F").append(i);
                    }
                    for (int i = 0; i < m - warmup; i++) {
                        expected.append(" F").append(warmup + i).append(" B").append(i);
                    }
                    for (int i = m - warmup; i < m; i++) {
                        expected.append(" B").append(i);
                    }
                    assertEquals(expected.toString().trim(), compute(ops), "P=" + p + " M=" + m + " rank=" + rank);
                    assertEquals(warmup, OneForwardOneBackwardSchedule.warmupForwards(p, m, rank));
                }
            }
        }
    }

    @Test
    void gpipeRunsAllForwardsThenAllBackwards() {
        List<Op> ops = PipelineSchedule.gpipe().ops(3, 3, 2);
        assertEquals("F0 F1 F2 B0 B1 B2", compute(ops));
        assertEquals(List.of(Op.recvActivation(0, 1), Op.forward(0), Op.recvActivation(1, 1), Op.forward(1),
                Op.recvActivation(2, 1), Op.forward(2), Op.backward(0), Op.sendGrad(0, 1), Op.backward(1),
                Op.sendGrad(1, 1), Op.backward(2), Op.sendGrad(2, 1)), ops);
        assertEquals(List.of(Op.forward(0), Op.backward(0)), PipelineSchedule.gpipe().ops(1, 1, 0));
    }

    @Test
    void forwardOnlyHasNoBackward() {
        List<List<Op>> programs = PipelineSchedule.forwardOnly().programs(3, 4);
        assertEquals(3, programs.size());
        for (List<Op> ops : programs) {
            assertEquals("F0 F1 F2 F3", compute(ops));
        }
        assertEquals(List.of(Op.recvActivation(0, 1), Op.forward(0), Op.recvActivation(1, 1), Op.forward(1)),
                PipelineSchedule.forwardOnly().ops(3, 2, 2));
    }

    @Test
    void schedulesArePureFunctions() {
        for (PipelineSchedule s : List.of(PipelineSchedule.gpipe(), PipelineSchedule.oneForwardOneBackward())) {
            assertEquals(s.ops(5, 7, 2), s.ops(5, 7, 2));
            assertThrows(UnsupportedOperationException.class, () -> s.ops(2, 2, 0).add(Op.forward(9)));
        }
    }

    @Test
    void namesAndBadArguments() {
        assertSame(PipelineSchedule.gpipe(), PipelineSchedule.byName("GPipe"));
        assertSame(PipelineSchedule.oneForwardOneBackward(), PipelineSchedule.byName(" 1f1b "));
        assertSame(PipelineSchedule.forwardOnly(), PipelineSchedule.byName("forward-only"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PipelineSchedule.byName("zb-h1"));
        assertTrue(e.getMessage().contains("zb-h1") && e.getMessage().contains("1f1b"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PipelineSchedule.gpipe().ops(0, 4, 0));
        assertThrows(IllegalArgumentException.class, () -> PipelineSchedule.gpipe().ops(2, 0, 0));
        e = assertThrows(IllegalArgumentException.class, () -> PipelineSchedule.oneForwardOneBackward().ops(2, 4, 2));
        assertTrue(e.getMessage().contains("rank 2"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Op.sendGrad(1, -1));
        assertThrows(IllegalArgumentException.class, () -> new Op(Op.Kind.FORWARD, 1, 3));
        assertThrows(IllegalArgumentException.class, () -> Op.forward(-1));
        assertEquals("sendAct3->2", Op.sendActivation(3, 2).toString());
        assertEquals("recvGrad0<-4", Op.recvGrad(0, 4).toString());
    }
}
