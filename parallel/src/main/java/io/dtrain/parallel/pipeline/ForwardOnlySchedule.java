package io.dtrain.parallel.pipeline;

import java.util.ArrayList;
import java.util.List;

/** Evaluation: every micro-batch forward, no backward, so no activation is kept. */
final class ForwardOnlySchedule implements PipelineSchedule {
    static final ForwardOnlySchedule INSTANCE = new ForwardOnlySchedule();

    private ForwardOnlySchedule() {
    }

    @Override
    public String name() {
        return "forward-only";
    }

    @Override
    public List<Op> ops(int stages, int microbatches, int rank) {
        PipelineSchedule.checkArguments(stages, microbatches, rank);
        List<Op> out = new ArrayList<>();
        for (int m = 0; m < microbatches; m++) {
            ScheduleSteps.forward(out, stages, rank, m);
        }
        return List.copyOf(out);
    }

    @Override
    public String toString() {
        return name();
    }
}
