#!/usr/bin/env python3
"""Generate the recurrent-layer parity fixtures of runtime/tests/rnn_parity.rs
and tests/recurrent.rs: nn.RNN (tanh and relu), nn.LSTM (with and without
proj_size) and nn.GRU over every combination of {1, 2 layers} x
{uni, bidirectional} x {batch_first, time-major} x {zero, given initial
state} x {equal, variable lengths}, one larger case per type, and one
training step's gradients per type.

What it writes: tests/fixtures/recurrent.safetensors (about 190 KB), and
tests/fixtures/recurrent_keys.json (the state_dict keys and shapes of a few
modules, for the DSL's manifest tests). No
weights are stored: every tensor the Rust tests need as an input is rebuilt
there from a formula, so the file holds only PyTorch's results.

  formula(shape, name)  element i (row-major) is
                        0.5 * sin(0.37 * i + 0.1 + phase(name)), computed in
                        float64 and rounded to float32, where
                        phase(name) = (sum over bytes b_k of (k + 1) * b_k) mod 1000 / 100.

  Parameters are formula(shape, state_dict name) (`weight_ih_l0`, ..), the
  input is formula([B, T, F], "x") (transposed to [T, B, F] for a
  time-major case), initial states formula([L*D, B, H], "h0") and "c0".
  Variable lengths are LENGTHS (padded positions still hold formula values,
  which must not matter).

For every case NAME (see `cases()`):

  NAME.y   the output sequence, in the case's layout (zeros past each
           sequence's length, as pad_packed_sequence gives)
  NAME.h   h_n [L*D, B, H_out]
  NAME.c   c_n [L*D, B, H] (LSTM)

For the gradient cases, loss = sum(y * Ry) + sum(h * Rh) (+ sum(c * Rc)),
R* = formula(shape, "Ry"/"Rh"/"Rc"), and:

  NAME.grad.x, NAME.grad.h0, NAME.grad.c0, NAME.grad.<param>

References are computed in float64 from the float32 formula values and
stored as float32.

How to run (from the repository root):

    python3 scripts/gen_recurrent_fixtures.py

Requirements: torch, safetensors. CPU only; deterministic.
"""

import itertools
import math
import os

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fixture_common import save_checked

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "recurrent.safetensors")

torch.set_num_threads(1)

B, T, F, H, P = 3, 6, 3, 5, 3
LENGTHS = [6, 2, 4]
BIG = dict(B=4, T=20, F=16, H=32)


def phase(name):
    return (sum((k + 1) * b for k, b in enumerate(name.encode())) % 1000) / 100.0


def formula(shape, name):
    n = math.prod(shape)
    ph = phase(name)
    vals = [0.5 * math.sin(0.37 * float(i) + 0.1 + ph) for i in range(n)]
    x = torch.tensor(vals, dtype=torch.float64).to(torch.float32).to(torch.float64)
    return x.reshape(shape)


def module(cell, f, h, layers, bi, bf, proj):
    kw = dict(num_layers=layers, bidirectional=bi, batch_first=bf)
    if cell == "rnn_tanh":
        m = nn.RNN(f, h, nonlinearity="tanh", **kw)
    elif cell == "rnn_relu":
        m = nn.RNN(f, h, nonlinearity="relu", **kw)
    elif cell == "lstm":
        m = nn.LSTM(f, h, proj_size=proj, **kw)
    else:
        m = nn.GRU(f, h, **kw)
    m = m.double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(formula(tuple(p.shape), name))
    return m


def run(name, cell, layers, bi, bf, init, var, proj=0, grads=False, b=B, t=T, f=F, h=H):
    out = {}
    m = module(cell, f, h, layers, bi, bf, proj)
    d = 2 if bi else 1
    hout = proj if proj else h
    x = formula((b, t, f), "x")
    if not bf:
        x = x.transpose(0, 1).contiguous()
    x.requires_grad_(grads)
    h0 = c0 = None
    state = None
    if init:
        h0 = formula((layers * d, b, hout), "h0").requires_grad_(grads)
        if cell == "lstm":
            c0 = formula((layers * d, b, h), "c0").requires_grad_(grads)
            state = (h0, c0)
        else:
            state = h0
    inp = x
    if var:
        inp = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=bf, enforce_sorted=False)
    y, st = m(inp, state)
    if var:
        y, _ = pad_packed_sequence(y, batch_first=bf, total_length=t)
    hn, cn = st if cell == "lstm" else (st, None)
    out[f"{name}.y"] = y
    out[f"{name}.h"] = hn
    if cn is not None:
        out[f"{name}.c"] = cn
    if grads:
        loss = (y * formula(tuple(y.shape), "Ry")).sum() + (hn * formula(tuple(hn.shape), "Rh")).sum()
        if cn is not None:
            loss = loss + (cn * formula(tuple(cn.shape), "Rc")).sum()
        loss.backward()
        out[f"{name}.grad.x"] = x.grad
        if init:
            out[f"{name}.grad.h0"] = h0.grad
            if c0 is not None:
                out[f"{name}.grad.c0"] = c0.grad
        for pname, p in m.named_parameters():
            out[f"{name}.grad.{pname}"] = p.grad
    return {k: v.detach().to(torch.float32) for k, v in out.items()}


def case_name(cell, layers, bi, bf, init, var, proj=0):
    return "_".join([
        cell + (f"p{proj}" if proj else ""),
        f"l{layers}",
        "bi" if bi else "uni",
        "bf" if bf else "tm",
        "h0" if init else "z",
        "var" if var else "eq",
    ])


def cases():
    """(name, kwargs) for every case."""
    out = []
    for cell in ["rnn_tanh", "lstm", "gru"]:
        for layers, bi, bf, init, var in itertools.product([1, 2], [False, True], [True, False], [False, True], [False, True]):
            out.append((case_name(cell, layers, bi, bf, init, var),
                        dict(cell=cell, layers=layers, bi=bi, bf=bf, init=init, var=var)))
    # ReLU RNN and LSTM with a projection: a few combinations each.
    for cell, proj in [("rnn_relu", 0), ("lstm", P)]:
        for layers, bi, bf, init, var in [(1, False, True, False, False), (2, True, True, True, True), (2, True, False, False, True)]:
            out.append((case_name(cell, layers, bi, bf, init, var, proj),
                        dict(cell=cell, layers=layers, bi=bi, bf=bf, init=init, var=var, proj=proj)))
    # One training step's gradients per type.
    for cell, proj in [("rnn_tanh", 0), ("lstm", 0), ("gru", 0), ("lstm", P)]:
        name = "grad_" + case_name(cell, 2, True, True, True, True, proj)
        out.append((name, dict(cell=cell, layers=2, bi=True, bf=True, init=True, var=True, proj=proj, grads=True)))
    # One larger case per type.
    for cell in ["rnn_tanh", "lstm", "gru"]:
        out.append((f"big_{cell}", dict(cell=cell, layers=2, bi=True, bf=True, init=False, var=False,
                                        b=BIG["B"], t=BIG["T"], f=BIG["F"], h=BIG["H"])))
    return out


KEYS_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "recurrent_keys.json")

# state_dict keys and shapes of modules the DSL tests declare the same way.
KEY_CASES = {
    "lstm_3_5_l2_bi": lambda: nn.LSTM(3, 5, num_layers=2, bidirectional=True),
    "lstm_4_6_p2": lambda: nn.LSTM(4, 6, proj_size=2),
    "gru_3_5_l2_bi_nobias": lambda: nn.GRU(3, 5, num_layers=2, bidirectional=True, bias=False),
    "rnn_3_5_relu": lambda: nn.RNN(3, 5, nonlinearity="relu"),
}


def write_keys():
    import json
    keys = {name: [[k, list(v.shape)] for k, v in make().state_dict().items()] for name, make in KEY_CASES.items()}
    with open(KEYS_OUT, "w") as f:
        json.dump(keys, f, indent=1, sort_keys=True)
        f.write("\n")


class GnmtEncoder(nn.Module):
    """Wu et al. 2016's encoder, small: a bidirectional bottom layer, a
    unidirectional one, then unidirectional layers whose input is added to
    their output (residual connections from the third layer on)."""

    def __init__(self, f, h, residual_layers):
        super().__init__()
        self.bottom = nn.LSTM(f, h, bidirectional=True, batch_first=True)
        self.l1 = nn.LSTM(2 * h, h, batch_first=True)
        self.residual = nn.ModuleList(nn.LSTM(h, h, batch_first=True) for _ in range(residual_layers))

    def forward(self, x):
        y, _ = self.bottom(x)
        y, _ = self.l1(y)
        for layer in self.residual:
            z, _ = layer(y)
            y = y + z
        return y


def gnmt():
    """`gnmt.y`: GnmtEncoder(3, 5, 2) on formula([3, 6, 3], "x"), every
    parameter formula(shape, its full state_dict name)."""
    m = GnmtEncoder(F, H, 2).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(formula(tuple(p.shape), name))
        y = m(formula((B, T, F), "x"))
    return {"gnmt.y": y.to(torch.float32)}


def main():
    write_keys()
    tensors = gnmt()
    for name, kw in cases():
        tensors.update(run(name, **kw))
    save_checked(tensors, OUT, {"generator": "scripts/gen_recurrent_fixtures.py", "torch": torch.__version__})
    print(f"wrote {OUT}: {len(cases())} cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
