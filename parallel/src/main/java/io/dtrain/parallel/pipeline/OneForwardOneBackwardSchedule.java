package io.dtrain.parallel.pipeline;

import java.util.ArrayList;
import java.util.List;

/**
 * Megatron's non-interleaved 1F1B (PipeDream-Flush): a warm-up of {@code min(P - rank - 1, M)} forwards, a
 * steady phase alternating one forward and one backward, and a cool-down of the remaining backwards. A stage
 * holds at most {@code P - rank} micro-batches' activations instead of GPipe's M; the bubble is the same.
 */
final class OneForwardOneBackwardSchedule implements PipelineSchedule {
    static final OneForwardOneBackwardSchedule INSTANCE = new OneForwardOneBackwardSchedule();

    private OneForwardOneBackwardSchedule() {
    }

    @Override
    public String name() {
        return "1f1b";
    }

    /** Forwards a stage runs before its first steady-phase forward. */
    static int warmupForwards(int stages, int microbatches, int rank) {
        return Math.min(stages - rank - 1, microbatches);
    }

    @Override
    public List<Op> ops(int stages, int microbatches, int rank) {
        PipelineSchedule.checkArguments(stages, microbatches, rank);
        int warmup = warmupForwards(stages, microbatches, rank);
        List<Op> out = new ArrayList<>();
        for (int m = 0; m < warmup; m++) {
            ScheduleSteps.forward(out, stages, rank, m);
        }
        for (int i = 0; i < microbatches - warmup; i++) {
            ScheduleSteps.forward(out, stages, rank, warmup + i);
            ScheduleSteps.backward(out, stages, rank, i);
        }
        for (int m = microbatches - warmup; m < microbatches; m++) {
            ScheduleSteps.backward(out, stages, rank, m);
        }
        return List.copyOf(out);
    }

    @Override
    public String toString() {
        return name();
    }
}
