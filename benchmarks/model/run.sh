#!/usr/bin/env bash
# Tokens/s of GptModel.forwardBackward alone on a small float32 GPT (d 128, 4 layers, 4 heads, seq 128, batch 16),
# one line per variant (io.dtrain.bench.GptModelSpeed). A quick look at a model change's speed; the full training
# step against PyTorch is benchmarks/compare-pytorch.sh.
# Usage: benchmarks/model/run.sh [--engine fused|samediff] [--all] [--batch 16] [--warmup 1] [--steps 2]
#   --all also measures dropout 0.1; the fused engine also prints its per-op breakdown. OMP_NUM_THREADS pins the
#   compute threads. The JIT needs a few dozen calls to settle: use e.g. --warmup 40 --steps 20 for steady figures.
# Under a minute on 2 cores after the build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/benchmarks/build.sh"
JVM_OPTS="$(sed -n 's/^dtrain\.jvm\.options=//p' "$ROOT/jvm.properties")"
# shellcheck disable=SC2086  # option lists are space-separated by design
exec java $JVM_OPTS ${DTRAIN_JAVA_OPTS:-} -cp "$ROOT/benchmarks/target/classes:$ROOT/launcher/target/dtrain.jar" \
  io.dtrain.bench.GptModelSpeed "$@"
