#!/usr/bin/env python3
"""The recurrent benchmark of the Sequences issue, interleaved with PyTorch:
a 2-layer nn.LSTM and nn.GRU (input 128, hidden 256, T = 100, batch 32,
batch_first) against the same networks written in `network!`
(benches/recurrent.rs), forward in inference and a training step (forward,
cross-entropy of the last step's output against fixed targets, backward,
SGD with momentum 0.9).

    cargo build --release --bench recurrent # the Rust side, release (what
                                           # users deploy; built if missing)
    python3 scripts/bench_recurrent.py [--rounds 7] [--steps 5] [--threads 2]

Each round runs the Rust side (a fresh process, one warm-up step, then
--steps timed steps) and PyTorch (the same), in alternating order; each
side's time in a round is the median of its steps. Reported: each side's
median over the rounds and the median of the per-round ratios, the only
figure worth comparing on a machine whose speed drifts.
"""
import argparse
import os
import statistics
import subprocess

import torch
import torch.nn as nn
import torch.nn.functional as F

from interleave import bench_binary, interleave, timed


def rust_round(exe, model, kind, steps, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([exe, model, kind, str(steps)], env=env, check=True, capture_output=True, text=True)
    return statistics.median(float(t) for t in out.stdout.split())


def torch_round(model, kind, steps):
    torch.manual_seed(0)
    cls = nn.LSTM if model == "lstm" else nn.GRU
    m = cls(128, 256, num_layers=2, batch_first=True)
    x = torch.rand(32, 100, 128)
    y = torch.tensor([(i * 7) % 256 for i in range(32)])
    if kind == "train":
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x)[0][:, -1], y).backward()
            opt.step()

        return timed(step, steps)
    m.eval()
    with torch.inference_mode():
        return timed(lambda: m(x), steps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="e.g. lstm-infer")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    exe = bench_binary("recurrent")
    print(f"torch {torch.__version__}, threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    print("| workload | netdsl ms | PyTorch ms | ratio (median of rounds) | ratio range |")
    print("| --- | --- | --- | --- | --- |")
    for model in ["lstm", "gru"]:
        for kind in ["infer", "train"]:
            if args.only and args.only != f"{model}-{kind}":
                continue
            row = interleave(lambda: rust_round(exe, model, kind, args.steps, args.threads),
                             lambda: torch_round(model, kind, args.steps), args.rounds)
            print(f"| {model} {kind} | {row} |", flush=True)


if __name__ == "__main__":
    main()
