/**
 * What a training run records while it runs, one {@link io.dtrain.metrics.RunMetrics} per rank: a line per step
 * ({@code metrics/steps-rank<r>.jsonl}, fields {@link io.dtrain.metrics.StepFields}, with MFU), system samples
 * ({@code metrics/system-rank<r>.jsonl}, fields {@link io.dtrain.metrics.SystemFields}; /proc, the JVM, nvidia-smi),
 * a Chrome/Perfetto trace ({@link io.dtrain.metrics.Tracer}), TensorBoard event files
 * ({@link io.dtrain.metrics.TensorBoardEvents}) and a Prometheus endpoint (Prometheus's Java client). Every JSON line
 * goes through {@link io.dtrain.metrics.JsonLines}. Reading it back is {@code io.dtrain.report}'s job.
 */
package io.dtrain.metrics;
