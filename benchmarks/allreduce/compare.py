#!/usr/bin/env python3
"""AllReduce side by side: dtrain (shared-memory links, Aeron ipc and udp) vs PyTorch gloo vs Open MPI, in one run, one Markdown table.

    benchmarks/allreduce/run.sh [--worlds 2,4] [--sizes 1MiB,4MiB,16MiB,64MiB,256MiB] [--rounds 3] [--iterations 10]
                                [--metric busbw|time] [--only "dtrain shm,gloo,..."]

--metric time tabulates the median time per call in microseconds instead (small messages: latency). dtrain's cells
are compared with gloo's and Open MPI's (ratios > 1: dtrain better). "dtrain shm ring" is shm with the ring at every
size (DTRAIN_SHM_ALLREDUCE_MAX_BYTES=0: no shared-memory exchange), for choosing that threshold. "dtrain udp (no MAC)" is udp without frame
authentication (--insecure-transport), for the MAC's cost; for the udp systems a second table gives the CPU the
transport costs (all ranks and the media driver, core-seconds per GB the ranks sent).

Every system runs the same float32 SUM AllReduce with a barrier before each timed call and reports the median of
--iterations calls per size, after the same untimed warm-up calls per size for every system: as many as move 64 MiB,
at least 5 (nccl-tests' default) and at most 100 (before, 5 at every size: the first, small size of a run was timed
while dtrain's JIT was still compiling). The systems are interleaved round by round (dtrain shm, ipc,
udp, gloo, MPI, then again) so a change in machine load hits all of them alike; the table gives, per cell, the median
over the rounds of busbw = size / time x 2(n-1)/n in GB/s (nccl-tests' definition). The load average is sampled
before every run and reported. Per-run tables go to stderr as they come.

DTRAIN_BENCH_CMD overrides how dtrain is started (default: bin/dtrain bench allreduce); extra words are appended.
DTRAIN_BENCH_BASE_CMD, if set, adds the system "dtrain shm (base)": that command (e.g. another build's
`java -jar .../dtrain.jar bench allreduce`) with the shm transport, for A/B runs of two builds in the same minutes.

--netns NS@ADDR,NS@ADDR (as root; benchmarks/allreduce/netns.sh creates the namespaces and passes it): every system
runs its ranks in these network namespaces, in blocks (world 2: one rank per namespace, world 4: two), each
namespace standing for a host of its own (dtrain: its own media driver; gloo: its own interface); Open MPI is left
out there (its launcher would need an ssh agent into the other namespace).
"""
import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from benchlib import load1, parse_size  # noqa: E402
ROW = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)(?:\s+([\d.]+)(?:\s+([\d.]+))?)?\s*$")


def size_name(size):
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def systems(args):
    """name -> function(world) returning the command that prints one result table, or None if unavailable."""
    dtrain = shlex.split(os.environ.get("DTRAIN_BENCH_CMD", os.path.join(ROOT, "bin", "dtrain") + " bench allreduce"))
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    reference = [python, os.path.join(HERE, "allreduce_reference.py")]
    common = ["--sizes", args.sizes, "--iterations", str(args.iterations)]
    if args.netns:
        common += ["--netns", args.netns]
    found = {
        "dtrain shm": lambda w: dtrain + ["--world", str(w), "--transport", "shm"] + common,
        "dtrain shm (base)": lambda w: shlex.split(os.environ.get("DTRAIN_BENCH_BASE_CMD", "false")) + ["--world", str(w), "--transport", "shm"] + common,
        "dtrain shm ring": lambda w: ["env", "DTRAIN_SHM_ALLREDUCE_MAX_BYTES=0"] + dtrain + ["--world", str(w), "--transport", "shm"] + common,
        "dtrain ipc": lambda w: dtrain + ["--world", str(w), "--transport", "ipc"] + common,
        "dtrain udp": lambda w: dtrain + ["--world", str(w), "--transport", "udp"] + common,
        "dtrain udp (no MAC)": lambda w: dtrain + ["--world", str(w), "--transport", "udp", "--insecure-transport"] + common,
        "dtrain udp (mtu 64 KiB)": lambda w: ["env", "DTRAIN_UDP_MTU=65472"] + dtrain + ["--world", str(w), "--transport", "udp"] + common,
        "gloo": lambda w: reference + ["--backend", "gloo", "--world", str(w)] + common,
        "Open MPI": lambda w: reference + ["--backend", "mpi", "--world", str(w)] + common,
    }
    if not os.environ.get("DTRAIN_BENCH_BASE_CMD"):
        found["dtrain shm (base)"] = None
    if subprocess.call([python, "-c", "import torch.distributed"], stderr=subprocess.DEVNULL) != 0:
        print("gloo skipped: PyTorch is missing (apt-get install -y python3-torch)", file=sys.stderr)
        found["gloo"] = None
    if args.netns:
        found["Open MPI"] = None
    elif shutil.which("mpirun") is None or subprocess.call([python, "-c", "import mpi4py, numpy"], stderr=subprocess.DEVNULL) != 0:
        print("Open MPI skipped: apt-get install -y openmpi-bin libopenmpi-dev python3-mpi4py", file=sys.stderr)
        found["Open MPI"] = None
    return found


def run(command, timeout):
    """Runs one benchmark; returns {size: (time ms, busbw, CPU s/GB or None)} from its table (empty if it failed)."""
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout} s: {' '.join(command)}", file=sys.stderr)
        return {}
    table = {int(m.group(1)): (float(m.group(2)), float(m.group(4)),
                               (float(m.group(5)), float(m.group(6))) if m.group(6) else None)
             for m in map(ROW.match, done.stdout.splitlines()) if m}
    if done.returncode != 0 or not table:
        print(f"  failed ({done.returncode}): {' '.join(command)}\n{done.stdout}{done.stderr[-3000:]}", file=sys.stderr)
    return table


def describe_netns(spec):
    """'dtrainA (10.214.7.1, mtu 9000), ...' from NS@ADDR,... (the mtu of each namespace's interfaces but lo)."""
    parts = []
    for namespace, address in (h.split("@") for h in spec.split(",")):
        link = subprocess.run(["ip", "-n", namespace, "-o", "link", "show"], stdout=subprocess.PIPE, text=True).stdout
        mtus = [m.group(2) for m in re.finditer(r"^\d+: ([^:@]+)\S*: .* mtu (\d+)", link, re.M) if m.group(1) != "lo"]
        parts.append(f"{namespace} ({address}, mtu {','.join(mtus) or '?'})")
    return ", ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", default="2,4")
    parser.add_argument("--sizes", default="1MiB,4MiB,16MiB,64MiB,256MiB")
    parser.add_argument("--metric", choices=["busbw", "time"], default="busbw")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--only", help="comma-separated subset of: dtrain shm, dtrain shm (base), dtrain shm ring, dtrain ipc, dtrain udp,"
                        " dtrain udp (no MAC), dtrain udp (mtu 64 KiB), gloo, Open MPI (default: all but 'dtrain shm ring'"
                        " and the udp variants; with --netns: dtrain udp, dtrain udp (no MAC), gloo)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per benchmark run")
    parser.add_argument("--netns", help="NS@ADDR,NS@ADDR: run every system's ranks in these network namespaces (root)")
    args = parser.parse_args()
    worlds = [int(w) for w in args.worlds.split(",")]
    sizes = [parse_size(s) // 4 * 4 for s in args.sizes.split(",") if s.strip()]
    commands = systems(args)
    if args.only:
        wanted = [s.strip() for s in args.only.split(",")]
        unknown = [s for s in wanted if s not in commands]
        if unknown:
            sys.exit(f"--only: unknown system(s) {unknown}; known: {list(commands)}")
        commands = {name: commands[name] for name in wanted}
    elif args.netns:
        commands = {name: commands[name] for name in ("dtrain udp", "dtrain udp (no MAC)", "gloo")}
    else:
        for variant in ("dtrain udp (no MAC)", "dtrain udp (mtu 64 KiB)", "dtrain shm ring", "dtrain shm (base)"):
            commands.pop(variant)
    names = [name for name, command in commands.items() if command is not None]

    busbw_by_round = {}  # (world, system, size, round) -> busbw, or time in us with --metric time
    cpu_by_round = {}  # (world, system, size, round) -> CPU s/GB
    loads = []
    started = time.time()
    for r in range(args.rounds):
        for world in worlds:
            for name in names:
                load = load1()
                loads.append(load)
                command = commands[name](world)
                t0 = time.time()
                table = run(command, args.timeout)
                print(f"round {r + 1}/{args.rounds} world {world} {name:10s} load {load:5.2f} ({time.time() - t0:4.1f} s): "
                      + "  ".join(f"{size_name(s)} {table[s][1]:.3f} GB/s {table[s][0] * 1e3:.0f} us" for s in sizes if s in table),
                      file=sys.stderr, flush=True)
                for size, (ms, busbw, cpu) in table.items():
                    if size in sizes:
                        busbw_by_round[(world, name, size, r)] = ms * 1e3 if args.metric == "time" else busbw
                        if cpu is not None:
                            cpu_by_round[(world, name, size, r)] = cpu

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    what = ("median time per call in us" if args.metric == "time"
            else "busbw in GB/s = size / time x 2(n-1)/n")
    where = f"between network namespaces {describe_netns(args.netns)} on one machine" if args.netns else "on one host"
    print(f"AllReduce float32 SUM {where} ({os.cpu_count()} cores, {cpu}); {time.strftime('%Y-%m-%d %H:%M')}; "
          f"{what}, median over {args.rounds} interleaved rounds of the median of "
          f"{args.iterations} calls; 1-min load average during the runs {min(loads):.1f}-{max(loads):.1f} "
          f"(median {statistics.median(loads):.1f}); {time.time() - started:.0f} s in all. Ratios (> 1: dtrain better): "
          f"{'other / dtrain' if args.metric == 'time' else 'dtrain / other'}, of the medians (in parentheses: median "
          f"over the rounds of the same round's ratio).\n")
    header = ["world", "size"] + [f"{name}" for name in names]
    dtrains = [name for name in names if name.startswith("dtrain")]
    ratios = [(name, peer) for peer in ("Open MPI", "gloo") if peer in names for name in dtrains]
    header += [f"{name[len('dtrain '):]} / {'MPI' if peer == 'Open MPI' else peer}" for name, peer in ratios]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")

    def median(key):
        values = [busbw_by_round[key + (r,)] for r in range(args.rounds) if key + (r,) in busbw_by_round]
        return statistics.median(values) if values else None

    for world in worlds:
        for size in sizes:
            cells = [str(world), size_name(size)]
            for name in names:
                value = median((world, name, size))
                cells.append("n/a" if value is None else f"{value:.2f}")
            for name, peer in ratios:
                ours, theirs = median((world, name, size)), median((world, peer, size))

                def ratio(a, b):
                    return b / a if args.metric == "time" else a / b
                paired = [ratio(busbw_by_round[(world, name, size, r)], busbw_by_round[(world, peer, size, r)])
                          for r in range(args.rounds)
                          if busbw_by_round.get((world, name, size, r)) and busbw_by_round.get((world, peer, size, r))]
                cells.append("n/a" if not ours or not theirs or not paired
                             else f"{ratio(ours, theirs):.2f}x ({statistics.median(paired):.2f}x)")
            print("| " + " | ".join(cells) + " |")
    udp = [name for name in names if name.startswith("dtrain udp")]
    if udp and cpu_by_round:
        print("\nCPU the udp path costs: core-seconds of all ranks and every host's media driver over the timed calls, per GB"
              " the ranks sent (in parentheses: the driver's part), median over the rounds:\n")
        print("| world | size | " + " | ".join(udp) + " |")
        print("|---|---|" + "|".join(["---:"] * len(udp)) + "|")
        for world in worlds:
            for size in sizes:
                cells = [str(world), size_name(size)]
                for name in udp:
                    values = [cpu_by_round[(world, name, size, r)] for r in range(args.rounds) if (world, name, size, r) in cpu_by_round]
                    cells.append(f"{statistics.median(v[0] for v in values):.2f} ({statistics.median(v[1] for v in values):.2f})"
                                 if values else "n/a")
                print("| " + " | ".join(cells) + " |")
    failed = [(w, name, s) for w in worlds for name in names for s in sizes
              if any((w, name, s, r) not in busbw_by_round for r in range(args.rounds))]
    if failed:
        print(f"\n{len(failed)} cells are missing rounds (a run failed or timed out; see stderr)")
        sys.exit(1)


if __name__ == "__main__":
    main()
