/**
 * Pipeline-parallel schedules as pure functions, and a simulator that checks them.
 *
 * <p>A {@link io.dtrain.parallel.pipeline.PipelineSchedule} maps (stages P, micro-batches M, stage rank) to the
 * ordered list of {@link io.dtrain.parallel.pipeline.Op}s that rank executes in one optimizer step: forward m,
 * backward m, and the explicit sends and receives of activations (downstream) and gradients (upstream) between
 * neighbouring stages. GPipe runs all forwards then all backwards (M activations held); 1F1B is Megatron's
 * non-interleaved schedule (warm-up of P - rank - 1 forwards, steady one-forward-one-backward, cool-down
 * backwards; at most P - rank held); forward-only serves evaluation. The bubble is (P - 1) / (M + P - 1) for
 * both training schedules.
 *
 * <p>Executors (trainer-core's {@code io.dtrain.train.pp}) run such lists without knowing the schedule, so a new
 * schedule (interleaved, zero-bubble) is a new pure function checked here by
 * {@link io.dtrain.parallel.pipeline.PipelineSimulator}: a deterministic round-robin interpreter with blocking
 * receives and bounded or unbounded FIFO channels that detects deadlocks, enforces every op's data
 * dependencies, and times the run with given forward/backward costs. Nothing here depends on the model.
 */
package io.dtrain.parallel.pipeline;
