package io.dtrain.parallel.pipeline;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;

/**
 * A pure function from (stages P, micro-batches M, stage rank) to the ordered list of operations that rank
 * executes in one optimizer step. Executors run the list and never ask which schedule produced it.
 */
public interface PipelineSchedule {

    /** The name used in configs and logs: gpipe, 1f1b, forward-only. */
    String name();

    /** The operations stage {@code rank} executes, in order. */
    List<Op> ops(int stages, int microbatches, int rank);

    /** Every stage's list, index = rank. */
    default List<List<Op>> programs(int stages, int microbatches) {
        List<List<Op>> out = new ArrayList<>(stages);
        for (int rank = 0; rank < stages; rank++) {
            out.add(ops(stages, microbatches, rank));
        }
        return Collections.unmodifiableList(out);
    }

    static PipelineSchedule gpipe() {
        return GPipeSchedule.INSTANCE;
    }

    static PipelineSchedule oneForwardOneBackward() {
        return OneForwardOneBackwardSchedule.INSTANCE;
    }

    static PipelineSchedule forwardOnly() {
        return ForwardOnlySchedule.INSTANCE;
    }

    /** gpipe, 1f1b or forward-only (case-insensitive). */
    static PipelineSchedule byName(String name) {
        String n = name == null ? "" : name.trim().toLowerCase(Locale.ROOT);
        return switch (n) {
            case "gpipe" -> gpipe();
            case "1f1b" -> oneForwardOneBackward();
            case "forward-only" -> forwardOnly();
            default -> throw new IllegalArgumentException("unknown pipeline schedule '" + name
                    + "': use gpipe, 1f1b or forward-only");
        };
    }

    /** Throws a clear error unless 1 <= P, 1 <= M and 0 <= rank < P. */
    static void checkArguments(int stages, int microbatches, int rank) {
        if (stages < 1) {
            throw new IllegalArgumentException("pipeline needs at least 1 stage, got " + stages);
        }
        if (microbatches < 1) {
            throw new IllegalArgumentException("pipeline needs at least 1 micro-batch, got " + microbatches);
        }
        if (rank < 0 || rank >= stages) {
            throw new IllegalArgumentException("stage rank " + rank + " is outside [0, " + stages + ")");
        }
    }
}
