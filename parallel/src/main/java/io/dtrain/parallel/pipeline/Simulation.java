package io.dtrain.parallel.pipeline;

import java.util.List;

/**
 * The outcome of {@link PipelineSimulator#run}: what every stage executed, when, and how many micro-batches'
 * activations it held at most.
 *
 * @param timelines      per stage, its executed operations in program order
 * @param executionOrder every executed operation in the interpreter's global order (causally consistent)
 * @param peakInFlight   per stage, the most micro-batches forwarded and still waiting for their backward
 * @param busyTime       per stage, the summed cost of its forward and backward operations
 * @param makespan       the time the last operation ends
 */
public record Simulation(List<List<TimedOp>> timelines, List<TimedOp> executionOrder, int[] peakInFlight,
                         double[] busyTime, double makespan) {

    public int stages() {
        return timelines.size();
    }

    /** Idle fraction of the P x makespan stage-time: (P - 1) / (M + P - 1) for GPipe and 1F1B with unit costs. */
    public double bubbleFraction() {
        double busy = 0;
        for (double b : busyTime) {
            busy += b;
        }
        return makespan == 0 ? 0 : 1.0 - busy / (stages() * makespan);
    }
}
