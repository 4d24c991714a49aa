#!/usr/bin/env python3
"""PyTorch (CPU, eager, inference_mode) timings of the workloads of
runtime/benches/conv.rs, for docs/performance.md.

    RAYON_NUM_THREADS=2 python3 scripts/bench_conv_torch.py [rounds]

Threads: RAYON_NUM_THREADS if set (the variable candle and the runtime's
conv follow), else the number of physical cores (candle's default); passed
to torch.set_num_threads. Workloads alternate in rounds, medians are
printed as a markdown table with GFLOP/s and the fraction of the 1024^3
matmul measured in the same rounds.
"""

import os
import sys
import time

import torch
import torch.nn.functional as F


def physical_cores():
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                    cores.add((phys, core))
        return len(cores) or os.cpu_count()
    except OSError:
        return os.cpu_count()


# name, x shape, w shape, stride, padding, groups, bias+relu
WORK = [
    ("3x3 64->64 56x56 b1", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, False),
    ("3x3 64->64 56x56 b8", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, False),
    ("3x3 256->256 14x14 b1", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1, False),
    ("1x1 256->64 56x56 b1", (1, 256, 56, 56), (64, 256, 1, 1), 1, 0, 1, False),
    ("7x7 s2 3->64 224x224 b1", (1, 3, 224, 224), (64, 3, 7, 7), 2, 3, 1, False),
    ("depthwise 3x3 32ch 112x112 b1", (1, 32, 112, 112), (32, 1, 3, 3), 1, 1, 32, False),
    ("3x3 64->64 56x56 b8 +bias+ReLU", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, True),
]


def flops(x, w, s, p):
    oh = (x[2] + 2 * p - w[2]) // s + 1
    ow = (x[3] + 2 * p - w[3]) // s + 1
    return 2.0 * x[0] * w[0] * oh * ow * w[1] * w[2] * w[3]


def ms(f):
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1e3


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    threads = int(os.environ.get("RAYON_NUM_THREADS", 0)) or physical_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    jobs = []
    for name, xs, ws, s, p, g, relu in WORK:
        x, w, bias = torch.randn(xs), torch.randn(ws) * 0.1, torch.randn(ws[0])
        if relu:
            f = lambda x=x, w=w, bias=bias, s=s, p=p, g=g: F.relu(
                F.conv2d(x, w, bias, stride=s, padding=p, groups=g))
        else:
            f = lambda x=x, w=w, s=s, p=p, g=g: F.conv2d(x, w, None, stride=s, padding=p, groups=g)
        jobs.append(f)
    with torch.inference_mode():
        mm = lambda: torch.mm(a, b)
        for _ in range(2):
            mm()
            for f in jobs:
                f()
        t_mm, t = [], [[] for _ in jobs]
        for _ in range(rounds):
            t_mm.append(ms(mm))
            for i, f in enumerate(jobs):
                t[i].append(ms(f))
    med = lambda v: sorted(v)[len(v) // 2]
    mm_ms = med(t_mm)
    ceiling = 2 * 1024**3 / mm_ms / 1e6
    print(f"torch {torch.__version__}, threads: {threads}, rounds: {rounds}; "
          f"1024^3 matmul: {mm_ms:.2f} ms = {ceiling:.1f} GFLOP/s\n")
    print("| workload | torch ms | torch GFLOP/s | torch / its matmul |")
    print("|---|---|---|---|")
    for (name, xs, ws, s, p, g, _), ts in zip(WORK, t):
        m = med(ts)
        gf = flops(xs, ws, s, p) / m / 1e6
        print(f"| {name} | {m:.2f} | {gf:.1f} | {100 * gf / ceiling:.0f}% |")


if __name__ == "__main__":
    main()
