#!/usr/bin/env python3
"""Fits the filter lowering cost model (`cost_us` in
macros/compiler/src/ops/filter.rs) to the timings of every lowering.

    cargo build --release --bench filter_speed
    python3 scripts/bench_filters.py --forms --no-median --out target/filter_forms.json
    python3 scripts/fit_filter_costs.py target/filter_forms.json

Each form's time is modelled as a sum of counts (per call, per element
written or padded, per multiply-add, per `n log2 n` of the FFT) times a
rate; the rates are fitted by non-negative least squares on the relative
error (a 20 us case weighs as much as a 20 ms one), one form at a time.
Prints the constants for filter.rs, then each case's measured and
estimated times and whether the cheapest estimate is the fastest form
measured (or within 10 % of it). The case is the benchmark's: a k x k
Gaussian, `reflect` border, `same` output, one n x n channel.
"""
import json
import math
import sys

import numpy as np
from scipy.optimize import nnls


def fft_len(n):
    m = max(n, 2)
    while True:
        if m % 2 == 0:
            r = m
            for p in (2, 3, 5):
                while r % p == 0:
                    r //= p
            if r == 1:
                return m
        m += 1


def band_block(k):
    v = 2 * max(k - 1, 0)
    v = -(-v // 16) * 16
    return min(max(v, 64), 256)


IN_PLACE_MAX = 1 << 20


def features(form, n, k):
    """The counts each rate multiplies, for one n x n channel, same output."""
    h = w = oh = ow = n
    hp, wp = oh + k - 1, ow + k - 1
    pad = hp * wp
    if form == "direct":
        return {"DIRECT_NS": 1, "DIRECT_PAD_NS": pad, "DIRECT_NS_PER_MAC": oh * ow * k * k}
    if form == "separable" and h * w <= IN_PLACE_MAX:
        return {
            "SEPARABLE_NS": 1,
            "SEPARABLE_IN_PLACE_NS_PER_ELEMENT": h * ow + oh * ow,
            "SEPARABLE_IN_PLACE_NS_PER_MAC": oh * wp * k + oh * ow * k,
        }
    if form == "separable":
        return {
            "SEPARABLE_NS": 1,
            "SEPARABLE_PAD_NS": pad,
            "SEPARABLE_NS_PER_MAC": oh * wp * k + oh * ow * k,
        }
    if form == "banded":
        span = lambda kk, m: min(m, band_block(kk) + kk - 1)  # noqa: E731
        return {"BANDED_NS": 1, "GEMM_NS_PER_MAC": h * ow * span(k, w) + oh * ow * span(k, h)}
    if form == "fft":
        p = fft_len(hp) * fft_len(wp)
        return {"FFT_NS": 1, "FFT_NS_PER_POINT_LOG": p * math.log2(p)}
    raise ValueError(form)


def main():
    data = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "target/filter_forms.json"))
    cases = data["gauss"]
    rates = {}
    for form in ["direct", "separable", "banded", "fft"]:
        rows = [(c, features(form, c["n"], c["k"])) for c in cases if form in c["forms_ms"]]
        # The in-place and padded separable forms fit apart; names decide.
        groups = {}
        for c, f in rows:
            groups.setdefault(tuple(sorted(f)), []).append((c, f))
        for names, grp in groups.items():
            a = np.array([[f[nm] for nm in names] for _, f in grp], dtype=float)
            t = np.array([c["forms_ms"][form] * 1e6 for c, _ in grp])  # ns
            # Columns scaled to one so the solver sees comparable numbers.
            scale = a.max(axis=0)
            x, _ = nnls(a / scale / t[:, None], np.ones(len(t)))
            for nm, v in zip(names, x / scale):
                rates.setdefault(nm, v)
    for nm, v in rates.items():
        print(f"const {nm}: f64 = {v:.4g};")
    print()
    hits = 0
    for c in cases:
        est = {f: sum(rates[nm] * v for nm, v in features(f, c["n"], c["k"]).items()) / 1e6 for f in c["forms_ms"]}
        got = c["forms_ms"]
        pick = min(est, key=est.get)
        fastest = min(got, key=got.get)
        ok = got[pick] <= 1.1 * got[fastest]
        hits += ok
        row = ", ".join(f"{f} {got[f]:.3f}/{est[f]:.3f}" for f in got)
        print(f"n {c['n']:5} k {c['k']:3}: pick {pick:9} fastest {fastest:9} {'ok' if ok else 'MISS'}  (ms measured/est: {row})")
    print(f"{hits} of {len(cases)} cases pick a form within 10 % of the fastest")


if __name__ == "__main__":
    main()
