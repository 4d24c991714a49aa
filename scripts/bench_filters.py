#!/usr/bin/env python3
"""The Filters issue's speed comparison, interleaved round by round.

A Gaussian of k x k taps (k in 3, 7, 15, 31, 61; sigma = (k - 1) / 8, the
`reflect` border, `same` output) on one n x n float32 channel (n in 64, 256,
512, 2048): netdsl's automatically chosen lowering (benches/filter_speed.rs,
the compiler's cost model) against the best PyTorch form, the fastest of
  - direct: F.conv2d with the k x k kernel (k <= 15 only, as the issue says),
  - conv1d pair: F.conv2d with the k x 1 then the 1 x k kernel,
  - banded pair: A_h @ x @ A_w with the border folded into the matrices
    (built once, outside the timing),
  - fft: torch.fft.rfft2 of the padded input times the kernel's spectrum
    (computed once, outside the timing), irfft2, cropped;
every form but the banded pair pads with F.pad(mode="reflect") first,
inside the timing (the banded pair needs no padded copy). And
the 5 x 5 median on 512 x 512 (`replicate`, as medianBlur) against OpenCV's
cv2.medianBlur.

    pip install torch opencv-python-headless
    cargo build --release --bench filter_speed   # release, as users deploy
                                                 # (see interleave.bench_binary)
    python3 scripts/bench_filters.py [--rounds 7] [--threads 2] [--only 512]
                                     [--forms]

Each round runs every side once, in an order that rotates from round to
round; a side's time in a round is the median of its steps (after one
warm-up). Reported per case: each side's median over the rounds and the
median (and range) of the per-round ratio netdsl / best PyTorch form, where
the best form is the fastest in that round. --forms also times every netdsl
lowering (to fit the cost model). Threads: 2 on every side (RAYON_NUM_THREADS
for Rust; torch.set_num_threads with OMP_WAIT_POLICY=PASSIVE so idle OpenMP
threads do not spin while the other side runs; cv2.setNumThreads).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SIZES = [64, 256, 512, 2048]
KERNELS = [3, 7, 15, 31, 61]


def rust_binary():
    cands = [p for p in glob.glob("target/release/deps/filter_speed-*") if not p.endswith(".d")]
    if not cands:
        raise SystemExit("build it first: cargo build --release --bench filter_speed")
    return max(cands, key=os.path.getmtime)


class Rust:
    def __init__(self, threads):
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        self.p = subprocess.Popen([rust_binary()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline().split()
        if not out or out[0] == "error":
            raise SystemExit(f"rust: {line}: {' '.join(out)}")
        return out

    def gauss(self, n, k, form, steps):
        out = self.ask(f"gauss {n} {k} {form} {steps}")
        return out[0], statistics.median(float(t) for t in out[1:])

    def median(self, n, k, steps):
        out = self.ask(f"median {n} {k} - {steps}")
        return statistics.median(float(t) for t in out[1:])

    def costs(self, n, k):
        return dict(kv.split("=") for kv in self.ask(f"costs {n} {k}"))


def gaussian_1d(k):
    sigma = (k - 1) / 8.0
    r = (k - 1) // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * x * x / (sigma * sigma)) if sigma > 0 else (x == 0).astype(np.float64)
    return g / g.sum()


def reflect_index(i, n):
    m = i % (2 * n - 2) if n > 1 else 0
    return m if m < n else 2 * n - 2 - m


def band(taps, n):
    """[n, n]: out[i] = sum_t taps[t] x[reflect(i + t - r)]."""
    r = (len(taps) - 1) // 2
    a = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for t, v in enumerate(taps):
            a[i, reflect_index(i + t - r, n)] += v
    return a


def torch_forms(n, k):
    g = gaussian_1d(k)
    r = (k - 1) // 2
    gt = torch.tensor(g, dtype=torch.float32)
    k2 = torch.outer(gt, gt)
    forms = {}

    def pad(x):
        return F.pad(x, (r, r, r, r), mode="reflect") if r else x

    if k <= 15:
        w2 = k2.view(1, 1, k, k)
        forms["direct"] = lambda x: F.conv2d(pad(x), w2)
    wc, wr = gt.view(1, 1, k, 1), gt.view(1, 1, 1, k)
    forms["conv1d pair"] = lambda x: F.conv2d(F.conv2d(pad(x), wc), wr)
    a = torch.tensor(band(g, n), dtype=torch.float32)
    at = a.t().contiguous()
    forms["banded pair"] = lambda x: a @ x[0, 0] @ at
    hp = n + 2 * r
    kp = torch.zeros(hp, hp)
    kp[:k, :k] = k2
    kspec = torch.fft.rfft2(kp).conj()

    def fft(x):
        y = torch.fft.irfft2(torch.fft.rfft2(pad(x)) * kspec, s=(hp, hp))
        return y[..., :n, :n]

    forms["torch.fft"] = fft
    return forms


def torch_time(f, x, steps):
    with torch.no_grad():
        f(x)
        ts = []
        for _ in range(steps):
            t = time.perf_counter()
            f(x)
            ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def check_forms(forms, x, n):
    """Every PyTorch form computes the same filter (to 1e-4)."""
    with torch.no_grad():
        ys = {name: f(x).reshape(n, n) for name, f in forms.items()}
    ref = ys["conv1d pair"]
    for name, y in ys.items():
        err = (y - ref).abs().max().item()
        if err > 1e-4:
            raise SystemExit(f"{name} differs from the conv1d pair by {err}")


def steps_for(n, k):
    work = n * n * max(k, 8)
    return max(3, min(50, int(2e8 / work)))


def rotate(xs, i):
    i %= len(xs)
    return xs[i:] + xs[:i]


def bench_gauss(rust, n, k, rounds, forms_too):
    steps = steps_for(n, k)
    x = torch.rand(1, 1, n, n)
    forms = torch_forms(n, k)
    check_forms(forms, x, n)
    own = ["auto"] + (["direct", "separable", "banded", "fft"] if forms_too else [])
    if forms_too and n * n * k * k > 2048 * 2048 * 15 * 15:
        own.remove("direct")
    sides = [("rust", o) for o in own] + [("torch", name) for name in forms]
    times = {s: [] for s in sides}
    ratios, chosen = [], None
    for rd in range(rounds):
        got = {}
        for side in rotate(sides, rd):
            if side[0] == "rust":
                name, t = rust.gauss(n, k, side[1], steps)
                if side[1] == "auto":
                    chosen = name
            else:
                t = torch_time(forms[side[1]], x, steps)
            got[side] = t
            times[side].append(t)
        best = min(got[s] for s in sides if s[0] == "torch")
        ratios.append(got[("rust", "auto")] / best)
    med = {s: statistics.median(v) for s, v in times.items()}
    best_torch = min((s for s in sides if s[0] == "torch"), key=lambda s: med[s])
    return {
        "n": n,
        "k": k,
        "chosen": chosen,
        "auto_ms": med[("rust", "auto")],
        "forms_ms": {s[1]: med[s] for s in sides if s[0] == "rust" and s[1] != "auto"},
        "torch_ms": {s[1]: med[s] for s in sides if s[0] == "torch"},
        "best_torch": best_torch[1],
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "costs_us": rust.costs(n, k),
    }


def bench_median(rust, rounds, threads):
    import cv2

    cv2.setNumThreads(threads)
    n, k, steps = 512, 5, 20
    x = np.random.default_rng(0).random((n, n), dtype=np.float32)
    rs, cs, ratios = [], [], []
    for rd in range(rounds):
        order = ["rust", "cv2"] if rd % 2 == 0 else ["cv2", "rust"]
        got = {}
        for side in order:
            if side == "rust":
                got[side] = rust.median(n, k, steps)
            else:
                cv2.medianBlur(x, k)
                ts = []
                for _ in range(steps):
                    t = time.perf_counter()
                    cv2.medianBlur(x, k)
                    ts.append((time.perf_counter() - t) * 1e3)
                got[side] = statistics.median(ts)
        rs.append(got["rust"])
        cs.append(got["cv2"])
        ratios.append(got["rust"] / got["cv2"])
    return {
        "rust_ms": statistics.median(rs),
        "cv2_ms": statistics.median(cs),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", type=int, nargs="*", help="image sizes to run")
    ap.add_argument("--kernels", type=int, nargs="*", help="kernel sizes to run")
    ap.add_argument("--forms", action="store_true", help="also time every netdsl lowering")
    ap.add_argument("--no-median", action="store_true")
    ap.add_argument("--out", default="target/filter_speed.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    rust = Rust(a.threads)
    results = []
    print("| n | k | chosen | netdsl ms | best PyTorch form | its ms | ratio median (min-max) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in a.only or SIZES:
        for k in a.kernels or KERNELS:
            r = bench_gauss(rust, n, k, a.rounds, a.forms)
            results.append(r)
            extra = ""
            if a.forms:
                extra = " forms " + ", ".join(f"{f} {t:.3f}" for f, t in r["forms_ms"].items())
                extra += " torch " + ", ".join(f"{f} {t:.3f}" for f, t in r["torch_ms"].items())
                extra += " est " + ", ".join(f"{f} {float(c) / 1000:.3f}" for f, c in r["costs_us"].items())
            print(
                f"| {n} | {k} | {r['chosen']} | {r['auto_ms']:.3f} | {r['best_torch']} | "
                f"{r['torch_ms'][r['best_torch']]:.3f} | {r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) |{extra}",
                flush=True,
            )
    med = None
    if not a.no_median:
        med = bench_median(rust, a.rounds, a.threads)
        print(
            f"median 5x5 512x512: netdsl {med['rust_ms']:.3f} ms, cv2.medianBlur {med['cv2_ms']:.3f} ms, "
            f"ratio {med['ratio']:.2f} ({med['ratio_min']:.2f}-{med['ratio_max']:.2f})"
        )
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"gauss": results, "median": med}, f, indent=1)


if __name__ == "__main__":
    main()
