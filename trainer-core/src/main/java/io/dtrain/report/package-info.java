/**
 * {@code dtrain report}: reads a finished (or crashed) run's {@code metrics/} directory back ({@link
 * io.dtrain.report.RunData}), names its bottleneck by fixed rules ({@link io.dtrain.report.Diagnosis}) and renders one
 * self-contained HTML or Markdown file ({@link io.dtrain.report.RunReport}, charts by {@code SvgChart}). Nothing here
 * runs during training; the files' field names come from {@link io.dtrain.metrics.StepFields} and
 * {@link io.dtrain.metrics.SystemFields}, which the recording side writes by.
 */
package io.dtrain.report;
