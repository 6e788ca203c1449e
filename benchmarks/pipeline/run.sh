#!/usr/bin/env bash
# Pipeline parallelism, Markdown tables on stdout (issue 7's benchmark):
#   (b) bubble vs (P-1)/(M+P-1) on sleep-based stages of equal cost, P = 4 and 2, GPipe and 1F1B, M = 1..16,
#       and peak live micro-batches per stage (io.dtrain.bench.PipelineBubbleBench, one process per stage);
#   (a) the same on gpt-cpu-small (seq_len 128, global batch 16) with P = 2 pinned stages of one thread each;
#   (c) tokens/s of 1 process x 2 threads, 2 data-parallel ranks and 2 pipeline stages (1F1B, M = 8).
# Usage: benchmarks/pipeline/run.sh [--only synthetic|real] [--microbatches 1,2,4,8,16] [--steps 4] [--warmup 1]
#                                   [--forward-ms 20] [--synthetic-stages 4,2] [--out /tmp/dtrain-pp-bench]
# About 7-8 minutes on 2 cores at load 2-5 (~1 min synthetic, 12 training runs of ~30 s); longer under load.
# --tabulate-only re-prints the real runs' tables from the run directories under --out without training.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/benchmarks/build.sh"   # dtrain.jar (bin/dtrain's) and PipelineBubbleBench, once if sources changed
export DTRAIN_NO_REBUILD=1     # not between runs
exec /usr/bin/python3 "$ROOT/benchmarks/pipeline/pp_bench.py" "$@"
