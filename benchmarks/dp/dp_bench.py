#!/usr/bin/env python3
"""Data parallelism on gpt-cpu-small: layouts, exposed communication, overlap. Run through benchmarks/dp/run.sh.

Every run is `dtrain launch` (so that both layouts get the same JVM options and memory budget) of
`train --config configs/gpt-cpu-small.yaml` with a handful of --set overrides (steps, no validation, no MFU GEMM
measurement, output under --out). Figures come from metrics/steps-rank<r>.jsonl: the first --warmup steps of each
run are discarded; per step the ranks are averaged; a cell is the median over the remaining steps of all rounds.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import DTRAIN, run_logged, steps_per_rank  # noqa: E402
CONFIG = "configs/gpt-cpu-small.yaml"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per run, warm-up included (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="steps discarded at the start of each run (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repeats of the whole set of runs (default 2)")
    p.add_argument("--global-batch", type=int, default=16,
                   help="sequences per step, both layouts (default 16: one micro-batch of 8 per rank at 2 ranks)")
    p.add_argument("--micro-batch", type=int, default=8, help="sequences per forward/backward (default 8, the config's)")
    p.add_argument("--overlap-segments", type=int, default=6,
                   help="parallel.dp.overlap_segments of the overlap-on runs (default 6 = one block per segment)")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="parallel.dp.bucket_mb (default 25)")
    p.add_argument("--comm-share", type=float, default=0.30,
                   help="throttled runs: AllReduce time / compute time to calibrate for (default 0.30)")
    p.add_argument("--throttle", type=int, default=0,
                   help="bytes/s for the throttled runs instead of calibrating (default: calibrate)")
    p.add_argument("--memory-per-worker", default="5g", help="launch --memory-per-worker (default 5g)")
    p.add_argument("--out", default="/tmp/dtrain-dp-bench", help="run directories (default /tmp/dtrain-dp-bench)")
    a = p.parse_args()
    if a.steps <= a.warmup:
        p.error(f"--steps ({a.steps}) must exceed --warmup ({a.warmup})")
    return a


class Run:
    def __init__(self, key, ranks, threads, overlap, throttled):
        self.key, self.ranks, self.threads, self.overlap, self.throttled = key, ranks, threads, overlap, throttled
        self.steps = []        # per measured step: dict of rank-averaged figures
        self.loads = []
        self.dirs = []
        self.params = None

    def label(self):
        return f"{self.ranks} rank{'s' if self.ranks > 1 else ''} x {self.threads} thread{'s' if self.threads > 1 else ''}"


def train_sets(a, run_dir, overlap):
    sets = {
        "training.steps": a.steps,
        "schedule.warmup_steps": 1,            # the schedule must fit in the run; speed does not depend on lr
        "training.global_batch": a.global_batch,
        "training.micro_batch": a.micro_batch,
        "training.log_interval": 1,
        "data.val": "",                        # no evaluation
        "metrics.peak_flops": "1e11",          # MFU's peak given: skips the GEMM measurement at start
        "output.dir": run_dir,
        "parallel.dp.overlap_segments": overlap,
        "parallel.dp.bucket_mb": a.bucket_mb,
    }
    out = []
    for k, v in sets.items():
        out += ["--set", f"{k}={v}"]
    return out


def execute(a, run, throttle, round_no):
    name = f"{run.key}-r{round_no}"
    run_dir = os.path.join(a.out, name)
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [DTRAIN, "launch", "--nproc-per-node", str(run.ranks), "--threads-per-worker", str(run.threads),
           "--memory-per-worker", a.memory_per_worker, "--stop-grace", "2"]
    if run.throttled:
        cmd += ["--env", f"DTRAIN_TRANSPORT_THROTTLE={throttle}"]
    cmd += ["--", "train", "--config", CONFIG, "--overwrite"] + train_sets(a, run_dir, run.overlap)
    output, seconds, load = run_logged(cmd, name, "dp_bench")
    m = re.search(r"model: ([\d,]+) parameters", output)
    run.params = int(m.group(1).replace(",", "")) if m else None
    per_rank = steps_per_rank(run_dir, run.ranks)
    for step in range(a.warmup, a.steps):
        recs = [rows[step] for rows in per_rank]
        mean = lambda k: statistics.fmean(float(x[k] or 0) for x in recs)
        step_ms = mean("step_ms")
        run.steps.append({"tokens_per_s": recs[0]["tokens"] / (step_ms / 1000), "step_ms": step_ms,
                          "compute_ms": mean("compute_ms"), "comm_ms": mean("comm_ms"),
                          "comm_share": mean("comm_ms") / step_ms,
                          # The rank that finished its backward last waits only for the transfer; the others also
                          # wait for it (load imbalance), which the mean includes.
                          "last_rank_comm_share": min(float(x["comm_ms"]) / float(x["step_ms"]) for x in recs)})
    run.loads.append(load)
    run.dirs.append(run_dir)
    print(f"  {name}: {seconds:.0f} s, load average {load:.1f}"
          + (f", throttle {throttle:,} B/s" if run.throttled else ""), file=sys.stderr, flush=True)


def med(run, key):
    return statistics.median(s[key] for s in run.steps)


def bucket_timeline(run_dir, warmup):
    """Per bucket, medians over ranks and measured steps: start and end relative to the end of the backward."""
    with open(os.path.join(run_dir, "trace.json")) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    rows = {}
    for pid in sorted({e["pid"] for e in events}):
        mine = [e for e in events if e["pid"] == pid]
        steps = sorted((e for e in mine if e.get("cat") == "step"), key=lambda e: e["ts"])
        for s in steps[warmup:]:
            inside = [e for e in mine if s["ts"] <= e["ts"] < s["ts"] + s["dur"]]
            compute_end = max(e["ts"] + e["dur"] for e in inside if e["name"] == "forward_backward")
            for e in inside:
                if e["name"].startswith("allreduce bucket"):
                    rows.setdefault(e["name"], []).append(((e["ts"] - compute_end) / 1000,
                                                           (e["ts"] + e["dur"] - compute_end) / 1000))
    order = sorted(rows, key=lambda n: -statistics.median(x[0] for x in rows[n]))
    return [(n, statistics.median(x[0] for x in rows[n]), statistics.median(x[1] for x in rows[n])) for n in order]


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    started = time.time()
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(f"machine: {cpu}, {os.cpu_count()} cores; load average at start {open('/proc/loadavg').read().split()[0]}",
          file=sys.stderr)
    runs = [Run("1x2", 1, 2, 1, False), Run("2x1-overlap-off", 2, 1, 1, False),
            Run("2x1-overlap-on", 2, 1, a.overlap_segments, False),
            Run("2x1-throttled-overlap-off", 2, 1, 1, True),
            Run("2x1-throttled-overlap-on", 2, 1, a.overlap_segments, True)]
    throttle = a.throttle
    calibration = None
    for round_no in range(1, a.rounds + 1):
        print(f"round {round_no}/{a.rounds}", file=sys.stderr, flush=True)
        for run in runs:
            if run.throttled and throttle == 0:
                # Calibrate from the unthrottled overlap-off run: a ring AllReduce sends 2(n-1)/n of the float32
                # gradients per rank, which at the throttle should take comm_share of that run's compute time.
                base = runs[1]
                n = base.ranks
                grad_bytes = 4 * base.params
                sent = 2 * (n - 1) / n * grad_bytes
                compute_s = med(base, "compute_ms") / 1000
                throttle = int(sent / (a.comm_share * compute_s))
                calibration = (grad_bytes, sent, compute_s)
                print(f"  throttle: {sent / 1e6:.1f} MB sent per rank per step / ({a.comm_share:.2f} x "
                      f"{compute_s:.2f} s compute) = {throttle:,} B/s", file=sys.stderr, flush=True)
            execute(a, run, throttle, round_no)
    minutes = (time.time() - started) / 60

    loads = [l for r in runs for l in r.loads]
    print(f"Data parallelism on gpt-cpu-small ({CONFIG}, global batch {a.global_batch} x 256 tokens, micro-batch "
          f"{a.micro_batch}, bucket {a.bucket_mb:g} MiB; {time.strftime('%Y-%m-%d %H:%M')}; {a.rounds} round(s) of "
          f"{a.steps} steps per run, first {a.warmup} discarded, medians of the rest, ranks averaged per step; "
          f"1-min load average during the runs {min(loads):.1f}-{max(loads):.1f}; {minutes:.1f} min in all)")
    print()
    print("| layout | overlap segments | throttle | tokens/s | step ms | compute ms | exposed comm ms | exposed comm % of step | same, last rank to finish backward | load avg |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        thr = f"{throttle / 1e6:.1f} MB/s" if r.throttled else "off"
        ov = str(r.overlap) + (" (off)" if r.overlap == 1 else "")
        comm = "-" if r.ranks == 1 else f"{med(r, 'comm_ms'):,.0f}"
        share = "-" if r.ranks == 1 else f"{100 * med(r, 'comm_share'):.1f}%"
        last = "-" if r.ranks == 1 else f"{100 * med(r, 'last_rank_comm_share'):.1f}%"
        print(f"| {r.label()} | {ov} | {thr} | {med(r, 'tokens_per_s'):,.0f} | {med(r, 'step_ms'):,.0f} | "
              f"{med(r, 'compute_ms'):,.0f} | {comm} | {share} | {last} | {statistics.median(r.loads):.1f} |")
    print()
    one, two = runs[0], runs[1]
    print(f"2 ranks x 1 thread / 1 rank x 2 threads, tokens/s: "
          f"{med(two, 'tokens_per_s') / med(one, 'tokens_per_s'):.2f}x (overlap off), "
          f"{med(runs[2], 'tokens_per_s') / med(one, 'tokens_per_s'):.2f}x (overlap on)")
    if calibration:
        grad_bytes, sent, compute_s = calibration
        print(f"Throttle: {two.params:,} parameters x 4 B = {grad_bytes / 1e6:.1f} MB of gradients; the ring sends "
              f"2(n-1)/n of it = {sent / 1e6:.1f} MB per rank per step; {a.comm_share:.0%} of the unthrottled "
              f"overlap-off compute ({compute_s * 1000:,.0f} ms) -> {throttle:,} B/s.")
    thr_off, thr_on = runs[3], runs[4]
    print(f"Throttled, overlap off: AllReduce (all exposed) / compute = "
          f"{med(thr_off, 'comm_ms') / med(thr_off, 'compute_ms'):.2f} (calibrated for {a.comm_share:.2f}); "
          f"overlap on: exposed {100 * med(thr_on, 'comm_share'):.1f}% of the step, ranks averaged; "
          f"{100 * med(thr_on, 'last_rank_comm_share'):.1f}% on the rank that finished its backward last (target < 10%).")
    print()
    print(f"Buckets of the throttled overlap-on run ({thr_on.dirs[-1]}/trace.json), ms relative to the end of the "
          f"backward (median over ranks and measured steps):")
    print()
    print("| bucket | starts | ends |")
    print("|---|---:|---:|")
    for name, start, end in bucket_timeline(thr_on.dirs[-1], a.warmup):
        print(f"| {name} | {start:+,.0f} | {end:+,.0f} |")


if __name__ == "__main__":
    main()
