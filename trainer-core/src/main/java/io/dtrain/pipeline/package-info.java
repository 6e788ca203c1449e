/**
 * Pipeline-parallel execution of a {@link io.dtrain.model.GptModel}'s stage graphs.
 *
 * <p>A {@link io.dtrain.pipeline.StageWorker} runs one stage's op list (made by a
 * {@link io.dtrain.parallel.pipeline.PipelineSchedule}, but the worker never asks which) one op at a time: forward
 * stores the stage's input in the {@link io.dtrain.pipeline.ActivationRegistry} when a backward of that
 * micro-batch follows, backward recomputes from it ({@code StageGraph.backward}); stage 0 also runs the
 * embedding, the last stage the loss, scaled by 1/M so the step's gradient is that of the mean over micro-batches.
 * Messages go through a {@link io.dtrain.pipeline.PipeTransport} whose receive does not block, so
 * {@link io.dtrain.pipeline.InProcessPipeline} drives all stages round-robin in one thread over an
 * {@link io.dtrain.pipeline.InMemoryPipeTransport}; an Aeron transport with one worker per process comes later.
 *
 * <p>Dropout masks are keyed by global sample index, so the pipelined step equals the unpipelined one. With tied
 * embeddings the last stage's wte-replica gradient is returned apart
 * ({@link io.dtrain.pipeline.PipelineResult#tiedHeadGrad}) and summed into stage 0's wte gradient, as Megatron's
 * embedding group does. Not switched on in the trainer yet (no config key).
 */
package io.dtrain.pipeline;
