package io.dtrain.parallel.pipeline;

import java.util.List;

/** The per-micro-batch building blocks every schedule strings together (receive, compute, send). */
final class ScheduleSteps {
    private ScheduleSteps() {
    }

    static void forward(List<Op> out, int stages, int rank, int m) {
        if (rank > 0) {
            out.add(Op.recvActivation(m, rank - 1));
        }
        out.add(Op.forward(m));
        if (rank < stages - 1) {
            out.add(Op.sendActivation(m, rank + 1));
        }
    }

    static void backward(List<Op> out, int stages, int rank, int m) {
        if (rank < stages - 1) {
            out.add(Op.recvGrad(m, rank + 1));
        }
        out.add(Op.backward(m));
        if (rank > 0) {
            out.add(Op.sendGrad(m, rank - 1));
        }
    }
}
