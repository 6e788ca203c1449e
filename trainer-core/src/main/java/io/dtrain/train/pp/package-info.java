/**
 * Pipeline parallelism: the step of a rank that holds one stage of P ({@link io.dtrain.train.pp.PipelineStep}), and
 * the executors that run a stage's op list.
 *
 * <p>A {@link io.dtrain.train.pp.StageWorker} runs one stage's op list (made by a
 * {@link io.dtrain.parallel.pipeline.PipelineSchedule}, chosen by {@code parallel.pipeline.schedule}; the worker never
 * asks which) one op at a time on its {@link io.dtrain.model.Stage}: a forward whose micro-batch has a backward
 * later keeps that micro-batch in a slot of the stage (the fused engine keeps its activations, the SameDiff engine
 * its input to recompute from; the {@link io.dtrain.train.pp.ActivationRegistry} counts them); stage 0 also runs
 * the embedding, the last stage the loss, scaled by 1/M so the step's gradient is that of the mean over
 * micro-batches. Messages go through a
 * {@link io.dtrain.train.pp.PipeTransport} whose receive does not block: {@link io.dtrain.train.pp.StageExecutor}
 * drives this process's stage over a {@link io.dtrain.train.pp.PeerPipeTransport} (Aeron {@code PeerLinks}
 * between the stage processes of one replica: ipc within a host, udp between hosts), timing the waits as the bubble;
 * {@link io.dtrain.train.pp.InProcessPipeline} drives all stages round-robin in one thread over an
 * {@link io.dtrain.train.pp.InMemoryPipeTransport}, the deterministic reference the tests compare with.
 *
 * <p>Switched on by {@code parallel.pipeline.stages > 1} (P x D processes, {@code dtrain launch}); which ranks form
 * which groups is {@link io.dtrain.parallel.pipeline.PipelineGroups}. Dropout masks are keyed by global sample
 * index, so the pipelined step equals the unpipelined one. With tied embeddings the last stage's LM head adds its
 * gradient into its own wte replica, which is summed with stage 0's wte gradient every step, as Megatron's
 * embedding group does (in-process both are the same wte).
 */
package io.dtrain.train.pp;
