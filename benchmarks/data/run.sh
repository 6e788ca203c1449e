#!/usr/bin/env bash
# Data-pipeline benchmarks: GPT-2 encode (dtrain vs OpenAI tiktoken, same texts, one run), preprocess MB/s,
# loader tokens/s. Run from anywhere after `mvn -o -q install -DskipTests`; prints one JSON line per figure.
# Needs node + `npm install` in this directory (tiktoken, WASM) and the zstd CLI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
data="${DTRAIN_SHARED_DATA:-$repo/../shared/data}"
out="$here/out"
mkdir -p "$out"

cd "$repo"
mvn -o -q -pl data-pipeline dependency:build-classpath -Dmdep.outputFile="$out/classpath.txt" -Dmdep.includeScope=runtime
cp="$repo/data-pipeline/target/classes:$(cat "$out/classpath.txt")"
opts=$(sed -n 's/^dtrain.jvm.options=//p' "$repo/jvm.properties")
java_bench() { java $opts -cp "$cp" "$here/DataBench.java" "$@"; }

[ -d "$here/node_modules/tiktoken" ] || (cd "$here" && npm install --no-audit --no-fund >/dev/null)
zstd -dcq "$data/pile-sample/val/00.jsonl.zst" > "$out/val.jsonl"

java_bench encode "$out/val.jsonl" "$data/gpt2-tokenizer"
node "$here/tiktoken-encode.mjs" "$out/val.jsonl" 5 | sed "s/}\$/, \"load\": $(cut -d' ' -f1 /proc/loadavg)}/"
java_bench preprocess "$data/pile-sample/train" "$out/train-gpt2" "$data/gpt2-tokenizer"
java_bench loader "$out/train-gpt2-0" "$data/gpt2-tokenizer"
