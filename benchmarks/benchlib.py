"""Pieces the benchmark scripts share: sizes with units, the machine's load while a run goes, running dtrain and
reading the per-step metrics it writes."""
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTRAIN = os.path.join(ROOT, "bin", "dtrain")


def parse_size(text):
    """'64MiB' -> 67108864; plain numbers are bytes."""
    text = text.strip().lower()
    for suffix, unit in (("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * unit
    return int(text)


def load1():
    """The 1-minute load average: every figure is reported next to it (2 shared cores make it matter)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class LoadSampler:
    """The 1-minute load average every 5 s while a run is going; stop() returns their median."""

    def __init__(self):
        self.samples = [load1()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(5):
            self.samples.append(load1())

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.samples.append(load1())
        return statistics.median(self.samples)


def run_logged(cmd, name, tool):
    """Runs one benchmark command from the repository root; returns (its output, seconds, median load while it ran).
    Exits with the tail of its output if it fails."""
    sampler = LoadSampler()
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.time() - t0
    load = sampler.stop()
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:])
        sys.exit(f"{tool}: run {name} failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return proc.stdout, seconds, load


def steps_per_rank(run_dir, ranks):
    """Every rank's metrics/steps-rank<r>.jsonl, as lists of step records (evaluation records left out)."""
    per_rank = []
    for r in range(ranks):
        with open(os.path.join(run_dir, "metrics", f"steps-rank{r}.jsonl")) as f:
            records = [json.loads(line) for line in f if line.strip()]
            per_rank.append([rec for rec in records if rec.get("type", "step") == "step"])
    return per_rank
