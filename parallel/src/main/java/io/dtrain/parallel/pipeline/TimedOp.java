package io.dtrain.parallel.pipeline;

/**
 * One executed operation of a simulation.
 *
 * @param sequence position in the global execution order of the interpreter
 * @param stage    the stage that ran it
 * @param indexInProgram its index in that stage's program
 * @param op       the operation
 * @param start    simulated start time (compute ops cost their forward/backward cost, communication 0)
 * @param end      simulated end time
 */
public record TimedOp(long sequence, int stage, int indexInProgram, Op op, double start, double end) {
}
