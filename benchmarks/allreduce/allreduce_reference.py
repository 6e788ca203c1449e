#!/usr/bin/env python3
"""AllReduce reference numbers to compare with `dtrain bench allreduce` (same sizes, float32 SUM, median).

PyTorch gloo:  torchrun --standalone --nproc-per-node 2 allreduce_reference.py --backend gloo
Open MPI:      mpirun -n 2 python3 allreduce_reference.py --backend mpi   (needs mpi4py and numpy)

Prints size, median time, algbw = size / time and busbw = algbw * 2(n-1)/n, like dtrain and nccl-tests.
"""
import argparse
import time


def parse_size(text):
    text = text.strip().lower()
    for suffix, unit in (("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * unit
    return int(text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["gloo", "mpi"], required=True)
    parser.add_argument("--sizes", default="1MiB,16MiB,64MiB,256MiB")
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]

    if args.backend == "gloo":
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        make = lambda n: torch.ones(n, dtype=torch.float32)
        allreduce = lambda buf: dist.all_reduce(buf)
        barrier = dist.barrier
    else:
        import numpy as np
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        rank, world = comm.Get_rank(), comm.Get_size()
        make = lambda n: np.ones(n, dtype=np.float32)
        allreduce = lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        barrier = comm.Barrier

    if rank == 0:
        print(f"# {args.backend} allreduce: {world} ranks, float32 SUM, {args.iterations} iterations (median)")
        print(f"{'size (B)':>14} {'time (ms)':>12} {'algbw (GB/s)':>12} {'busbw (GB/s)':>12}")
    for size in sizes:
        buf = make(size // 4)
        allreduce(buf)  # warm-up
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


if __name__ == "__main__":
    main()
