#!/usr/bin/env bash
# AllReduce: dtrain over Aeron (ipc, udp on loopback) vs PyTorch gloo vs Open MPI, one Markdown table on stdout.
# Usage: benchmarks/allreduce/run.sh [--worlds 2,4] [--sizes 1MiB,4MiB,16MiB,64MiB,256MiB] [--rounds 3] [--iterations 10]
#                                   [--metric busbw|time] [--only "dtrain shm,dtrain udp,dtrain udp (no MAC),gloo,Open MPI"]
# Needs: python3-torch (gloo) and openmpi-bin libopenmpi-dev python3-mpi4py (Open MPI), from Debian's apt.
# About 4-6 minutes with the defaults on 2 cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -z "${DTRAIN_BENCH_CMD:-}" ]; then
  "$ROOT/bin/dtrain" --version >/dev/null   # builds the jar once if sources changed, not between runs
  export DTRAIN_NO_REBUILD=1
fi
exec /usr/bin/python3 "$ROOT/benchmarks/allreduce/compare.py" "$@"
