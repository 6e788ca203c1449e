#!/usr/bin/env python3
"""AllReduce reference numbers to compare with `dtrain bench allreduce` (same sizes, float32 SUM, median).

PyTorch gloo:  /usr/bin/python3 allreduce_reference.py --backend gloo --world 2
Open MPI:      /usr/bin/python3 allreduce_reference.py --backend mpi --world 2     (needs mpi4py and numpy)

With --world the script starts the ranks itself: gloo workers get RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT like
torchrun sets them (Debian's torch 1.13 torchrun fails on Python 3.11 in its elastic agent), MPI ranks are started
with mpirun. Without --world it is one rank of an already launched job (torchrun or mpirun).

--netns NS@ADDR,NS@ADDR (gloo only, as root): the ranks run in these network namespaces, in blocks (rank r in
namespace r x hosts / world), the store on the first one's address, each rank's gloo on its namespace's interface
(benchmarks/allreduce/netns.sh sets them up: two "hosts" joined by a veth pair).

Prints size, median time, algbw = size / time and busbw = algbw * 2(n-1)/n, like dtrain and nccl-tests.
"""
import argparse
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import parse_size  # noqa: E402


def warm_up_calls(size):
    """Untimed calls per size: as many as move 64 MiB, at least 5 (nccl-tests) and at most 100; dtrain's benchmark
    (AllReduceBench.warmUpCalls) uses the same rule."""
    return max(5, min(100, (64 << 20) // max(1, size)))


def launch(args):
    """Starts args.world ranks of this script on this host; returns the exit code (0 if all succeeded)."""
    rank_args = [os.path.abspath(__file__), "--backend", args.backend, "--sizes", args.sizes,
                 "--iterations", str(args.iterations)]
    if args.backend == "mpi":
        command = ["mpirun", "-n", str(args.world), "--oversubscribe", "--bind-to", "none"]
        if os.geteuid() == 0:
            command.append("--allow-run-as-root")
        return subprocess.call(command + [sys.executable] + rank_args)
    hosts = [h.split("@") for h in args.netns.split(",")] if args.netns else []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free here; the namespaces have ports of their own, all free
    workers = []
    for rank in range(args.world):
        env = dict(os.environ, MASTER_ADDR=hosts[0][1] if hosts else "127.0.0.1", MASTER_PORT=str(port),
                   RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(args.world), OMP_NUM_THREADS="1")
        prefix = []
        if hosts:
            namespace, address = hosts[rank * len(hosts) // args.world]
            prefix = ["ip", "netns", "exec", namespace]
            env["GLOO_SOCKET_IFNAME"] = interface(namespace, address)
        workers.append(subprocess.Popen(prefix + [sys.executable] + rank_args, env=env,
                                        stdout=None if rank == 0 else subprocess.DEVNULL))
    codes = [w.wait() for w in workers]
    return 0 if all(c == 0 for c in codes) else 1


def interface(namespace, address):
    """The name of the interface that has address in namespace (gloo binds to it by name)."""
    listing = subprocess.run(["ip", "-n", namespace, "-o", "-4", "addr", "show", "to", address],
                             stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    if len(listing) < 2:
        sys.exit(f"--netns: no interface with {address} in namespace {namespace}")
    return listing[1].split("@")[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["gloo", "mpi"], required=True)
    parser.add_argument("--sizes", default="1MiB,16MiB,64MiB,256MiB")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--world", type=int, help="start this many ranks on this host (else: be one rank)")
    parser.add_argument("--netns", help="NS@ADDR,... : run the ranks in these network namespaces (gloo, root)")
    args = parser.parse_args()
    if args.world is not None:
        sys.exit(launch(args))
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]

    if args.backend == "gloo":
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        make = lambda n: torch.ones(n, dtype=torch.float32)
        allreduce = lambda buf: dist.all_reduce(buf)
        barrier = dist.barrier
        finish = dist.destroy_process_group
    else:
        import numpy as np
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        rank, world = comm.Get_rank(), comm.Get_size()
        make = lambda n: np.ones(n, dtype=np.float32)
        allreduce = lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        barrier = comm.Barrier
        finish = lambda: None

    if rank == 0:
        print(f"# {args.backend} allreduce: {world} ranks, float32 SUM, {args.iterations} iterations (median) after 5-100 warm-up calls (64 MiB's worth)")
        print(f"{'size (B)':>14} {'time (ms)':>12} {'algbw (GB/s)':>12} {'busbw (GB/s)':>12}")
    for size in sizes:
        buf = make(size // 4)
        for _ in range(warm_up_calls(size)):
            allreduce(buf)
        times = []
        for _ in range(args.iterations):
            barrier()
            t0 = time.perf_counter()
            allreduce(buf)
            times.append(time.perf_counter() - t0)
        median = sorted(times)[len(times) // 2]
        algbw = size / median / 1e9
        busbw = algbw * 2 * (world - 1) / world
        if rank == 0:
            print(f"{size:>14} {median * 1e3:>12.3f} {algbw:>12.3f} {busbw:>12.3f}", flush=True)
    finish()


if __name__ == "__main__":
    main()
