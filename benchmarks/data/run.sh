#!/usr/bin/env bash
# Data-pipeline benchmarks: GPT-2 encode (dtrain vs OpenAI tiktoken, same texts, one run), preprocess MB/s,
# loader tokens/s. Run from anywhere; builds dtrain.jar first if needed (benchmarks/build.sh); prints one JSON line
# per figure. Needs node + npm (this script runs `npm install` here once: tiktoken, WASM), the zstd CLI, and
# ../shared/data (pile-sample, gpt2-tokenizer; DTRAIN_SHARED_DATA overrides the path).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
data="${DTRAIN_SHARED_DATA:-$repo/../shared/data}"
out="$here/out"
mkdir -p "$out"

"$repo/benchmarks/build.sh"   # launcher/target/dtrain.jar holds the data pipeline and all its dependencies
opts=$(sed -n 's/^dtrain.jvm.options=//p' "$repo/jvm.properties")
# shellcheck disable=SC2086  # option lists are space-separated by design
java_bench() { java $opts -cp "$repo/launcher/target/dtrain.jar" "$here/DataBench.java" "$@"; }

[ -d "$here/node_modules/tiktoken" ] || (cd "$here" && npm install --no-audit --no-fund >/dev/null)
zstd -dcq "$data/pile-sample/val/00.jsonl.zst" > "$out/val.jsonl"

java_bench encode "$out/val.jsonl" "$data/gpt2-tokenizer"
node "$here/tiktoken-encode.mjs" "$out/val.jsonl" 5 | sed "s/}\$/, \"load\": $(cut -d' ' -f1 /proc/loadavg)}/"
java_bench preprocess "$data/pile-sample/train" "$out/train-gpt2" "$data/gpt2-tokenizer"
java_bench loader "$out/train-gpt2-0" "$data/gpt2-tokenizer"
