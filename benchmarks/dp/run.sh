#!/usr/bin/env bash
# Data parallelism on configs/gpt-cpu-small.yaml, one Markdown table on stdout:
#   (a) tokens/s of 1 rank x 2 threads vs 2 ranks x 1 thread (same global batch),
#   (b) exposed communication (comm_ms / step_ms) with bucket overlap off and on,
#   (c) the same with the transport throttled (DTRAIN_TRANSPORT_THROTTLE) so that the gradient AllReduce alone
#       takes ~30% of the compute time; the throttle is calibrated from (b)'s compute time and printed.
# Usage: benchmarks/dp/run.sh [--steps 5] [--warmup 2] [--rounds 2] [--global-batch 16] [--overlap-segments 6]
#                             [--comm-share 0.30] [--throttle BYTES_PER_S] [--out /tmp/dtrain-dp-bench]
# About 9-10 minutes with the defaults on 2 quiet cores: 2 interleaved rounds of 5 runs of ~1 min (much longer
# under load). The throttle is calibrated in round 1 and kept; pass --throttle B/s to fix it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -z "${DTRAIN_NO_REBUILD:-}" ]; then
  "$ROOT/bin/dtrain" --version >/dev/null   # builds the jar once if sources changed, not between runs
  export DTRAIN_NO_REBUILD=1
fi
exec /usr/bin/python3 "$ROOT/benchmarks/dp/dp_bench.py" "$@"
