#!/usr/bin/env python3
"""Pipeline parallelism: bubble vs theory, activation memory, P x D layouts. Run through benchmarks/pipeline/run.sh.

(b) PipelineBubbleBench: sleep-based stages of equal cost, one process per stage, P = 4 and P = 2.
(a) `dtrain launch --pin-cpus --threads-per-worker 1` of `train --config configs/gpt-cpu-small.yaml` with
    parallel.pipeline.stages=2, both schedules, M micro-batches of global_batch / M sequences.
(c) tokens/s of 1 process x 2 threads, 2 ranks data parallel, 2 stages 1F1B M=8 (the last is (a)'s run).
Figures come from metrics/steps-rank<r>.jsonl and metrics/dp-rank<r>.json: the first --warmup steps of each run
are discarded; per step the stages are averaged; a cell is the median over the remaining steps.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import DTRAIN, ROOT, load1, run_logged, steps_per_rank  # noqa: E402
CONFIG = "configs/gpt-cpu-small.yaml"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["synthetic", "real"], help="run only the synthetic bench or only the real runs")
    p.add_argument("--microbatches", default="1,2,4,8,16", help="M values (default 1,2,4,8,16)")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per real run, warm-up included (default 4)")
    p.add_argument("--warmup", type=int, default=1, help="steps discarded at the start of each real run (default 1)")
    p.add_argument("--global-batch", type=int, default=16, help="sequences per step (default 16)")
    p.add_argument("--seq-len", type=int, default=128, help="model.seq_len of the real runs (default 128)")
    p.add_argument("--memory-per-worker", default="4g", help="launch --memory-per-worker (default 4g)")
    p.add_argument("--synthetic-stages", default="4,2", help="P of the synthetic bench (default 4,2)")
    p.add_argument("--forward-ms", type=float, default=20, help="synthetic forward cost; backward = 2x (default 20)")
    p.add_argument("--synthetic-steps", type=int, default=6, help="synthetic steps per row, 1 discarded (default 6)")
    p.add_argument("--out", default="/tmp/dtrain-pp-bench", help="run directories (default /tmp/dtrain-pp-bench)")
    p.add_argument("--tabulate-only", action="store_true",
                   help="real runs: do not train, tabulate the run directories a previous run left under --out")
    a = p.parse_args()
    a.microbatches = [int(m) for m in a.microbatches.split(",")]
    for m in a.microbatches:
        if a.global_batch % m:
            p.error(f"--global-batch {a.global_batch} is not divisible by M = {m}")
    if a.steps <= a.warmup:
        p.error(f"--steps ({a.steps}) must exceed --warmup ({a.warmup})")
    return a


def java_command():
    opts = ""
    with open(os.path.join(ROOT, "jvm.properties")) as f:
        for line in f:
            if line.startswith("dtrain.jvm.options="):
                opts = line.split("=", 1)[1].strip()
    classpath = os.path.join(ROOT, "benchmarks", "target", "classes") + ":" + os.path.join(ROOT, "launcher", "target", "dtrain.jar")
    return ["java"] + opts.split() + ["-Xmx512m", "-cp", classpath, "io.dtrain.bench.PipelineBubbleBench"]


def synthetic(a):
    for p in [int(x) for x in a.synthetic_stages.split(",")]:
        cmd = java_command() + ["--stages", str(p), "--microbatches", ",".join(map(str, a.microbatches)),
                                "--forward-ms", str(a.forward_ms), "--backward-ms", str(2 * a.forward_ms),
                                "--steps", str(a.synthetic_steps)]
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-6000:])
            sys.exit(f"pp_bench: synthetic bench with P = {p} failed: {' '.join(cmd)}")
        print(proc.stdout)
        sys.stdout.flush()


class Run:
    def __init__(self, key, label, ranks, threads, sets):
        self.key, self.label, self.ranks, self.threads, self.sets = key, label, ranks, threads, sets
        self.steps = []        # per measured step: dict of stage-averaged figures
        self.summaries = []
        self.load = None
        self.seconds = None


def execute(a, run):
    run_dir = os.path.join(a.out, run.key)
    sets = {
        "model.seq_len": a.seq_len,
        "training.steps": a.steps,
        "schedule.warmup_steps": 1,            # the schedule must fit in the run; speed does not depend on lr
        "training.global_batch": a.global_batch,
        "training.log_interval": 1,
        "training.eval_interval": 0,
        "data.val": "",                        # no evaluation
        "metrics.peak_flops": "1e11",          # MFU's peak given: skips the GEMM measurement at start
        "output.dir": run_dir,
    }
    sets.update(run.sets)
    cmd = [DTRAIN, "launch", "--nproc-per-node", str(run.ranks), "--threads-per-worker", str(run.threads),
           "--pin-cpus", "--memory-per-worker", a.memory_per_worker, "--stop-grace", "2",
           "--", "train", "--config", CONFIG, "--overwrite"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    load_file = os.path.join(run_dir, "pp-bench-load.json")
    if a.tabulate_only:
        with open(load_file) as f:
            run.seconds, run.load = json.load(f)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        _, run.seconds, run.load = run_logged(cmd, run.key, "pp_bench")
        with open(load_file, "w") as f:
            json.dump([run.seconds, run.load], f)
    per_rank = steps_per_rank(run_dir, run.ranks)
    for r in range(run.ranks):
        with open(os.path.join(run_dir, "metrics", f"dp-rank{r}.json")) as f:
            run.summaries.append(json.load(f))
    for step in range(a.warmup, a.steps):
        recs = [rows[step] for rows in per_rank]
        mean = lambda k: statistics.fmean(float(x[k] or 0) for x in recs)
        step_ms = mean("step_ms")
        figures = {"tokens_per_s": recs[0]["tokens"] / (step_ms / 1000), "step_ms": step_ms,
                   "compute_ms": mean("compute_ms"), "comm_ms": mean("comm_ms")}
        if recs[0].get("bubble_ms") is not None:
            figures["stage_compute_ms"] = [float(x["compute_ms"]) for x in recs]
            figures["stage_forward_ms"] = [float(x["forward_ms"]) for x in recs]
            figures["stage_backward_ms"] = [float(x["backward_ms"]) for x in recs]
            # executor's measure: each stage's waiting over its own start-to-finish time of the pipelined part
            own = [float(x["compute_ms"]) + float(x["bubble_ms"]) for x in recs]
            figures["bubble_ms"] = mean("bubble_ms")
            figures["executor_bubble"] = statistics.fmean(float(x["bubble_ms"]) / o for x, o in zip(recs, own))
            # the pipeline's window: from each stage's start to the end of the slowest stage (stages start together
            # after the previous step's loss sum, up to their different optimizer times)
            window = max(own)
            figures["window_bubble"] = statistics.fmean(1 - float(x["compute_ms"]) / window for x in recs)
        run.steps.append(figures)
    print(f"  {run.key}: {run.seconds:.0f} s, load average {run.load:.1f}", file=sys.stderr, flush=True)


def stage_programs(schedule, stages, m):
    """Per stage, its compute ops [("F"|"B", micro-batch)] in order: the same lists as io.dtrain.parallel.pipeline's
    GPipeSchedule and OneForwardOneBackwardSchedule (communication implied by the neighbours)."""
    out = []
    for s in range(stages):
        if schedule == "gpipe":
            ops = [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
        else:
            warm = min(stages - s - 1, m)
            ops = [("F", i) for i in range(warm)]
            for i in range(m - warm):
                ops += [("F", warm + i), ("B", i)]
            ops += [("B", i) for i in range(m - warm, m)]
        out.append(ops)
    return out


def expected_window_bubble(schedule, m, forward, backward):
    """The window bubble the schedule gives with these per-stage costs of one micro-batch (free communication)."""
    stages = len(forward)
    programs = stage_programs(schedule, stages, m)
    done = [dict() for _ in range(stages)]          # (kind, micro-batch) -> end time
    clock, pc = [0.0] * stages, [0] * stages
    while any(pc[s] < len(programs[s]) for s in range(stages)):
        progressed = False
        for s in range(stages):
            while pc[s] < len(programs[s]):
                kind, i = programs[s][pc[s]]
                dep = (s - 1, ("F", i)) if kind == "F" and s > 0 else (s + 1, ("B", i)) if kind == "B" and s < stages - 1 else None
                if dep and dep[1] not in done[dep[0]]:
                    break
                start = max(clock[s], done[dep[0]][dep[1]] if dep else 0.0)
                clock[s] = start + (forward[s] if kind == "F" else backward[s])
                done[s][(kind, i)] = clock[s]
                pc[s] += 1
                progressed = True
        if not progressed:
            raise RuntimeError(f"{schedule} M={m}: the stage programs deadlock")
    makespan = max(clock)
    return statistics.fmean(1 - m * (forward[s] + backward[s]) / makespan for s in range(stages))


def med(run, key):
    return statistics.median(s[key] for s in run.steps)


def per_stage_median(run, key):
    return [statistics.median(s[key][r] for s in run.steps) for r in range(run.ranks)]


def real(a):
    started = time.time()
    stage_sets = lambda schedule, m: {"parallel.pipeline.stages": 2, "parallel.pipeline.schedule": schedule,
                                      "training.micro_batch": a.global_batch // m}
    pipeline_runs = [Run(f"pp2-{s}-m{m}", f"{s} M={m}", 2, 1, stage_sets(s, m))
                     for s in ["gpipe", "1f1b"] for m in a.microbatches]
    layout_runs = [Run("1x2", "1 process x 2 threads", 1, 2, {"training.micro_batch": a.global_batch // 2}),
                   Run("dp2", "2 ranks data parallel (D=2), 1 thread each", 2, 1,
                       {"training.micro_batch": a.global_batch // 2})]
    for run in pipeline_runs + layout_runs:
        execute(a, run)
    minutes = (time.time() - started) / 60
    loads = [r.load for r in pipeline_runs + layout_runs]

    print(f"Real model, P = 2: {CONFIG} with seq_len {a.seq_len}, global batch {a.global_batch} "
          f"({a.global_batch * a.seq_len:,} tokens/step), micro-batch = {a.global_batch}/M; `launch --nproc-per-node 2 "
          f"--pin-cpus --threads-per-worker 1` (one core and one compute thread per stage); {a.steps} steps per run, "
          f"first {a.warmup} discarded, medians of the rest; {time.strftime('%Y-%m-%d %H:%M')}; 1-min load average "
          f"{min(loads):.1f}-{max(loads):.1f}; {minutes:.1f} min for all real runs.")
    print()
    print("Bubble = the pipeline's part of the step only (forward/backward of the M micro-batches and their "
          "transfers; not the optimizer, not the loss/gradient-norm sums): *executor* = mean over stages of "
          "bubble_ms / (compute_ms + bubble_ms), each stage over its own start-to-finish time; *window* = mean over "
          "stages of 1 - compute_ms / (slowest stage's compute_ms + bubble_ms), the measure theory describes; "
          "*expected* = the window bubble the schedule gives with the measured per-stage forward and backward times "
          "(theory assumes equal stages; communication free). Stage costs differ by design: a non-last stage "
          "recomputes its forward in the backward (forward + recompute + backward), the last stage runs forward, "
          "loss and backward in one call at its backward and nothing at its forward.")
    print()
    print("| schedule | M | micro-batch | theory (P-1)/(M+P-1) | bubble, window | window - theory | expected for "
          "measured stage costs | bubble, executor | stage compute ms (0 / 1) | step ms | tokens/s | "
          "peak live activations (stage 0, 1) | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|")
    for r in pipeline_runs:
        m = int(r.key.rsplit("m", 1)[1])
        schedule = r.sets["parallel.pipeline.schedule"]
        peaks = ", ".join(str(s["peak_live_activations"]) for s in r.summaries)
        forward = [x / m for x in per_stage_median(r, "stage_forward_ms")]
        backward = [x / m for x in per_stage_median(r, "stage_backward_ms")]
        # the last stage's F op only keeps its input; its B op computes loss, forward and backward in one call
        # (forward_ms is that call's forward part)
        backward[-1] += forward[-1]
        forward[-1] = 0.0
        expected = expected_window_bubble(schedule, m, forward, backward)
        compute = " / ".join(f"{x:,.0f}" for x in per_stage_median(r, "stage_compute_ms"))
        theory = 1 / (m + 1)
        window = med(r, "window_bubble")
        print(f"| {schedule} | {m} | {r.sets['training.micro_batch']} | {100 * theory:.1f}% | {100 * window:.1f}% | "
              f"{100 * (window - theory):+.1f} pp | {100 * expected:.1f}% | {100 * med(r, 'executor_bubble'):.1f}% | "
              f"{compute} | {med(r, 'step_ms'):,.0f} | {med(r, 'tokens_per_s'):,.0f} | {peaks} | {r.load:.1f} |")
    print()
    by_key = {r.key: r for r in pipeline_runs}
    for m in a.microbatches:
        g = max(s["peak_live_activations"] for s in by_key[f"pp2-gpipe-m{m}"].summaries)
        o = max(s["peak_live_activations"] for s in by_key[f"pp2-1f1b-m{m}"].summaries)
        ok = "met" if o * m <= 2 * g else "MISSED"
        print(f"- M = {m}: peak live micro-batches 1F1B {o} vs GPipe {g} = {o / g:.3f} (target <= P/M = {2 / m:.3f}: {ok})")
    print()

    pp = by_key.get("pp2-1f1b-m8")
    rows = layout_runs + ([pp] if pp else [])
    print(f"Layouts on 2 cores (same model and global batch; pinned, one compute thread per core):")
    print()
    print("| layout (P x D) | processes x threads | micro-batches per step per rank | tokens/s | step ms | "
          "compute ms | exposed comm ms | bubble ms | load avg |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r is pp:
            label, layout, micro = "2x1: 2 pipeline stages, 1F1B, M=8", "2 x 1", 8
        elif r.ranks == 1:
            label, layout, micro = "1x1: one process", "1 x 2", a.global_batch // r.sets["training.micro_batch"]
        else:
            label, layout, micro = "1x2: 2 data-parallel ranks", "2 x 1", a.global_batch // 2 // r.sets["training.micro_batch"]
        bubble = f"{med(r, 'bubble_ms'):,.0f}" if "bubble_ms" in r.steps[0] else "-"
        comm = "-" if r.ranks == 1 else f"{med(r, 'comm_ms'):,.0f}"
        print(f"| {label} | {layout} | {micro} | {med(r, 'tokens_per_s'):,.0f} | {med(r, 'step_ms'):,.0f} | "
              f"{med(r, 'compute_ms'):,.0f} | {comm} | {bubble} | {r.load:.1f} |")
    print()


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(f"machine: {cpu}, {os.cpu_count()} cores; load average at start {load1()}", file=sys.stderr, flush=True)
    if a.only != "real":
        synthetic(a)
    if a.only != "synthetic":
        real(a)


if __name__ == "__main__":
    main()
