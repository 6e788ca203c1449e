// Encode throughput of OpenAI's tiktoken (npm "tiktoken", WASM build), encoding "gpt2", one thread:
// every "text" of a plain JSON Lines file, as ordinary text (no special tokens), like dtrain's Gpt2Tokenizer.
// Usage: node tiktoken-encode.mjs FILE.jsonl [passes]
import { readFileSync } from "node:fs";
import { get_encoding } from "tiktoken";

const file = process.argv[2];
const passes = Number(process.argv[3] ?? 5);
const texts = readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l).text);
const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0);
const enc = get_encoding("gpt2");

function pass() {
  let tokens = 0;
  const t0 = process.hrtime.bigint();
  for (const t of texts) tokens += enc.encode_ordinary(t).length;
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, tokens };
}

pass(); // warm-up
const runs = Array.from({ length: passes }, pass).sort((a, b) => a.seconds - b.seconds);
const median = runs[Math.floor(runs.length / 2)];
console.log(JSON.stringify({ impl: "tiktoken-wasm", threads: 1, documents: texts.length, bytes,
  tokens: median.tokens, mb_per_s: bytes / 1e6 / median.seconds }));
enc.free();
