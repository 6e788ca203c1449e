package io.dtrain.parallel.pipeline;

import java.util.ArrayList;
import java.util.List;

/** GPipe: every micro-batch forward, then every micro-batch backward (all M activations held at the peak). */
final class GPipeSchedule implements PipelineSchedule {
    static final GPipeSchedule INSTANCE = new GPipeSchedule();

    private GPipeSchedule() {
    }

    @Override
    public String name() {
        return "gpipe";
    }

    @Override
    public List<Op> ops(int stages, int microbatches, int rank) {
        PipelineSchedule.checkArguments(stages, microbatches, rank);
        List<Op> out = new ArrayList<>();
        for (int m = 0; m < microbatches; m++) {
            ScheduleSteps.forward(out, stages, rank, m);
        }
        for (int m = 0; m < microbatches; m++) {
            ScheduleSteps.backward(out, stages, rank, m);
        }
        return List.copyOf(out);
    }

    @Override
    public String toString() {
        return name();
    }
}
