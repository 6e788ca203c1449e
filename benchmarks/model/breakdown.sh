#!/usr/bin/env bash
# Where a training step's time goes, by kind of op (io.dtrain.bench.StepBreakdown): the fused engine's op timer or,
# with --engine samediff, a listener timing every SameDiff op; plus the optimizer phase. Markdown table on stdout.
# Usage: benchmarks/model/breakdown.sh [--engine fused|samediff] [--config configs/gpt-cpu-small.yaml]
#                                      [--set key=value ...] [--warmup 20] [--steps 10]
# OMP_NUM_THREADS sets the compute threads (default: every core).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
"$ROOT/benchmarks/build.sh"
JVM_OPTS="$(sed -n 's/^dtrain\.jvm\.options=//p' "$ROOT/jvm.properties")"
# shellcheck disable=SC2086  # option lists are space-separated by design
exec java $JVM_OPTS ${DTRAIN_JAVA_OPTS:-} -Ddtrain.home="$ROOT" \
  -cp "$ROOT/benchmarks/target/classes:$ROOT/launcher/target/dtrain.jar" io.dtrain.bench.StepBreakdown "$@"
