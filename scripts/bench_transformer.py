#!/usr/bin/env python3
"""The Attention issue's speed figures, interleaved with PyTorch: the
encoder layer (nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True),
input [16, 128, 256]) and ViT-B/16 (torchvision's vit_b_16, one 224 x 224
image), in inference, against the same networks written in `network!`
(benches/encoder_layer.rs).

    cargo build --release --bench encoder_layer # the Rust side, release (what
                                           # users deploy; built if missing)
    python3 scripts/bench_transformer.py [--rounds 7] [--steps 5] [--threads 2]

Each round runs the Rust side (a fresh process, one warm-up forward, then
--steps timed ones) and PyTorch (the same, under torch.inference_mode), in
alternating order; each side's time in a round is the median of its steps.
Reported: each side's median over the rounds and the median of the
per-round ratios, the only figure worth comparing on a machine whose speed
drifts.
"""
import argparse
import os
import statistics
import subprocess

import torch
import torch.nn as nn

from interleave import bench_binary, interleave, timed


def rust_round(exe, model, steps, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([exe, model, str(steps)], env=env, check=True, capture_output=True, text=True)
    return statistics.median(float(t) for t in out.stdout.split())


def torch_round(model, steps):
    torch.manual_seed(0)
    if model == "encoder":
        m = nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True)
        x = torch.rand(16, 128, 256)
    else:
        import torchvision

        m = torchvision.models.vit_b_16(weights=None)
        x = torch.rand(1, 3, 224, 224)
    m.eval()
    with torch.inference_mode():
        return timed(lambda: m(x), steps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="encoder or vit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    exe = bench_binary("encoder_layer")
    print(f"torch {torch.__version__}, threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    print("| workload | netdsl ms | PyTorch eager ms | ratio (median of rounds) | ratio range |")
    print("| --- | --- | --- | --- | --- |")
    for model in ["encoder", "vit"]:
        if args.only and args.only != model:
            continue
        name = {"encoder": "encoder layer [16, 128, 256]", "vit": "ViT-B/16 b1 224x224"}[model]
        row = interleave(lambda: rust_round(exe, model, args.steps, args.threads),
                         lambda: torch_round(model, args.steps), args.rounds)
        print(f"| {name} | {row} |", flush=True)


if __name__ == "__main__":
    main()
