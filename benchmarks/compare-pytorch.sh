#!/usr/bin/env bash
# dtrain's GPT training step against the PyTorch reference (benchmarks/pytorch/gpt_reference.py).
#   1. float32, configs/gpt-cpu-small.yaml (dropout 0, one micro-batch of 8 x 256 tokens per step): step-1 loss and
#      grad norm within 1e-5, 20 losses within 1e-4, then median tokens/s of full training steps of both.
#   2. float64, a small shape with 2 micro-batches per step: losses and grad norms within 1e-10.
# Usage: benchmarks/compare-pytorch.sh [--threads N] [--python PATH] [any TorchComparison option]
#   Only float32:  benchmarks/compare-pytorch.sh --only float32      Only float64: --only float64
# Results: benchmarks/target/torch-comparison/<precision>/comparison.json; exit code 1 on any disagreement.
# Takes ~5-10 minutes on 2 quiet cores (the float32 runs dominate).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

THREADS=2
PYTHON=/usr/bin/python3
ONLY=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "compare-pytorch.sh: $PYTHON cannot import torch; pass --python /path/to/python-with-torch" >&2
  exit 2
fi

JAR="$ROOT/launcher/target/dtrain.jar"
CLASSES="$ROOT/benchmarks/target/classes"
"$ROOT/benchmarks/build.sh"   # dtrain.jar and the benchmark classes, rebuilt when sources changed

DEFAULT_MEMORY="-Dorg.bytedeco.javacpp.maxphysicalbytes=6G -Dorg.bytedeco.javacpp.maxbytes=4G"
JVM_OPTS="$(sed -n 's/^dtrain\.jvm\.options=//p' "$ROOT/jvm.properties")"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); threads $THREADS"
echo "torch: $("$PYTHON" -c 'import torch; print(torch.__version__)')"

run() {
  # OMP_NUM_THREADS: ND4J's (libnd4j's) OpenMP pool and its BLAS take the same thread count as torch.
  # Memory: a gpt-cpu-small step leaves GBs of dead off-heap arrays that only a GC frees; with jvm.properties'
  # maxphysicalbytes=12G the JVM grows to ~12 GB and was OOM-killed on a shared 23 GB machine. 6G/4G caps it
  # (javacpp then collects earlier); BENCH_JAVA_MEMORY="" restores the project defaults.
  # shellcheck disable=SC2086  # option lists are space-separated by design
  OMP_NUM_THREADS="$THREADS" java $JVM_OPTS -Xmx2g ${BENCH_JAVA_MEMORY-$DEFAULT_MEMORY} ${DTRAIN_JAVA_OPTS:-} \
    -Ddtrain.home="$ROOT" \
    -cp "$CLASSES:$JAR" io.dtrain.bench.TorchComparison --threads "$THREADS" --python "$PYTHON" "$@"
}

status=0
if [ -z "$ONLY" ] || [ "$ONLY" = float32 ]; then
  echo; echo "=== float32, configs/gpt-cpu-small.yaml ==="
  run --precision float32 ${ARGS[@]+"${ARGS[@]}"} || status=1
fi
if [ -z "$ONLY" ] || [ "$ONLY" = float64 ]; then
  echo; echo "=== float64, small shape (exactness of the semantics) ==="
  run --precision float64 ${ARGS[@]+"${ARGS[@]}"} || status=1
fi
exit $status
