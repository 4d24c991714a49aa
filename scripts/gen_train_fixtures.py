#!/usr/bin/env python3
"""Generate the PyTorch reference fixture for netdsl-runtime's training
library (runtime/src/train/), checked by runtime/tests/train_parity.rs.

What it writes (relative to the repo root):

  tests/fixtures/train.safetensors
      Losses. For every case NAME in LOSSES below (float32 unless noted):
        NAME.a        the first input (logits / log-probabilities / prediction)
        NAME.b        the second input (targets: int64 class indices for the
                      classification losses, float32 otherwise)
        NAME.loss     the loss, a 0-d tensor (reduction "mean")
        NAME.grad_a   d loss / d NAME.a
        NAME.grad_b   d loss / d NAME.b (float targets only)
      Optimisers. A linear least-squares problem shared by all runs:
        problem.x [5, 4], problem.y [5, 3]      the data
        problem.w [3, 4], problem.bias [3]      the initial parameters
        problem.unused [2]                      a parameter outside the loss
      loss = F.mse_loss(x @ w.T + bias, y); each step: zero_grad, loss,
      backward, optimizer.step() (then scheduler.step() where there is one).
      For every run NAME in OPTIMS below, after step k = 1..5:
        NAME.w.K, NAME.bias.K, NAME.unused.K    the parameters
      Schedules. For every NAME in SCHEDULES: NAME.lr, float64 [10], the
      scheduler's get_last_lr() at epochs 0..9 (base lr BASE_LR).
      The file's metadata has one key, "cases": a JSON object describing every
      loss, run and schedule (for reading only; the Rust test mirrors them).
      One key keeps the file byte-for-byte reproducible.

How to run (from the repository root):

    python3 scripts/gen_train_fixtures.py

Requirements: torch and safetensors (pip install torch safetensors). CPU only.
Output is deterministic (fixed seeds, float32, 1 thread).
"""

import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "train.safetensors")

STEPS = 5
EPOCHS = 10
BASE_LR = 0.1


def ce_inputs(big=False):
    logits = torch.randn(6, 5) * 3.0
    if big:
        # Saturated logits: exp would overflow without the max shift.
        logits = logits * 300.0
        logits[0, 2] = 1000.0
        logits[1] = -1000.0  # a row of equal logits
    targets = torch.tensor([0, 4, 2, 2, 1, 3], dtype=torch.int64)
    return logits, targets


def nll_inputs():
    logp = F.log_softmax(torch.randn(6, 5) * 2.0, dim=1)
    targets = torch.tensor([3, 0, 4, 1, 1, 2], dtype=torch.int64)
    return logp, targets


def pair_inputs(ties=False):
    a = torch.randn(4, 3)
    b = torch.randn(4, 3)
    if ties:
        # l1's gradient at a == b is sign(0) = 0 in PyTorch.
        b[0, 0] = a[0, 0]
        b[2, 1] = a[2, 1]
    return a, b


def bce_inputs():
    logits = torch.tensor(
        [50.0, -50.0, 100.0, -100.0, 0.0, 1.5, -2.25, 20.0, -20.0, 0.3, 50.0, -50.0]
    ).reshape(3, 4)
    targets = torch.tensor(
        [1.0, 0.0, 0.0, 1.0, 0.5, 1.0, 0.0, 0.3, 0.7, 0.9, 0.0, 1.0]
    ).reshape(3, 4)
    return logits, targets


# name -> (inputs maker, loss fn, float targets?, description)
LOSSES = {
    "ce": (ce_inputs, lambda a, b: F.cross_entropy(a, b), False, "F.cross_entropy(a, b)"),
    "ce_ls": (
        ce_inputs,
        lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1),
        False,
        "F.cross_entropy(a, b, label_smoothing=0.1)",
    ),
    "ce_big": (
        lambda: ce_inputs(big=True),
        lambda a, b: F.cross_entropy(a, b),
        False,
        "F.cross_entropy(a, b), logits up to +-1000",
    ),
    "ce_big_ls": (
        lambda: ce_inputs(big=True),
        lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1),
        False,
        "F.cross_entropy(a, b, label_smoothing=0.1), logits up to +-1000",
    ),
    "nll": (nll_inputs, lambda a, b: F.nll_loss(a, b), False, "F.nll_loss(a, b)"),
    "mse": (pair_inputs, F.mse_loss, True, "F.mse_loss(a, b)"),
    "l1": (lambda: pair_inputs(ties=True), F.l1_loss, True, "F.l1_loss(a, b), two ties"),
    "bce": (
        bce_inputs,
        F.binary_cross_entropy_with_logits,
        True,
        "F.binary_cross_entropy_with_logits(a, b), logits up to +-100",
    ),
}


def sgd(**kw):
    return ("sgd", kw, None)


def adam(**kw):
    return ("adam", kw, None)


def adamw(**kw):
    return ("adamw", kw, None)


# name -> (optimiser, kwargs, scheduler or None)
OPTIMS = {
    "sgd_plain": sgd(lr=0.1),
    "sgd_nesterov": sgd(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "sgd_dampening": sgd(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.001),
    "adam": adam(lr=0.01),
    "adam_l2": adam(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    "adamw": adamw(lr=0.01),
    "adamw_cosine": ("adamw", dict(lr=0.05, weight_decay=0.1), ("cosine", dict(T_max=4, eta_min=0.001))),
}

OPTIM_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

SCHEDULES = {
    "step_3_0.5": ("step", dict(step_size=3, gamma=0.5)),
    "step_1_0.9": ("step", dict(step_size=1, gamma=0.9)),
    "cosine_10_0.001": ("cosine", dict(T_max=10, eta_min=0.001)),
    "cosine_4_0": ("cosine", dict(T_max=4, eta_min=0.0)),
    "cosine_3_0.01": ("cosine", dict(T_max=3, eta_min=0.01)),
}

SCHED_CLASSES = {
    "step": torch.optim.lr_scheduler.StepLR,
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
}


def problem():
    torch.manual_seed(1234)
    return {
        "problem.x": torch.randn(5, 4),
        "problem.y": torch.randn(5, 3),
        "problem.w": torch.randn(3, 4) * 0.5,
        "problem.bias": torch.randn(3) * 0.5,
        "problem.unused": torch.randn(2),
    }


def main():
    torch.set_num_threads(1)
    tensors = {}
    meta = {"losses": {}, "optims": {}, "schedules": {}}

    for i, (name, (make, fn, float_targets, desc)) in enumerate(LOSSES.items()):
        torch.manual_seed(100 + i)
        a, b = make()
        a = a.float().clone().requires_grad_(True)
        if float_targets:
            b = b.float().clone().requires_grad_(True)
        loss = fn(a, b)
        loss.backward()
        tensors[f"{name}.a"] = a.detach().contiguous()
        tensors[f"{name}.b"] = b.detach().contiguous()
        tensors[f"{name}.loss"] = loss.detach().contiguous()
        tensors[f"{name}.grad_a"] = a.grad.contiguous()
        if float_targets:
            tensors[f"{name}.grad_b"] = b.grad.contiguous()
        meta["losses"][name] = desc

    prob = problem()
    tensors.update(prob)
    for name, (kind, kw, sched) in OPTIMS.items():
        w = prob["problem.w"].clone().requires_grad_(True)
        bias = prob["problem.bias"].clone().requires_grad_(True)
        unused = prob["problem.unused"].clone().requires_grad_(True)
        opt = OPTIM_CLASSES[kind]([w, bias, unused], foreach=False, **kw)
        scheduler = SCHED_CLASSES[sched[0]](opt, **sched[1]) if sched else None
        for k in range(1, STEPS + 1):
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(prob["problem.x"] @ w.T + bias, prob["problem.y"])
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            tensors[f"{name}.w.{k}"] = w.detach().clone()
            tensors[f"{name}.bias.{k}"] = bias.detach().clone()
            tensors[f"{name}.unused.{k}"] = unused.detach().clone()
        meta["optims"][name] = f"{OPTIM_CLASSES[kind].__name__}({kw}), scheduler {sched}"

    for name, (kind, kw) in SCHEDULES.items():
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=BASE_LR)
        scheduler = SCHED_CLASSES[kind](opt, **kw)
        lrs = []
        for _ in range(EPOCHS):
            lrs.append(scheduler.get_last_lr()[0])
            opt.step()
            scheduler.step()
        tensors[f"{name}.lr"] = torch.tensor(lrs, dtype=torch.float64)
        meta["schedules"][name] = f"{SCHED_CLASSES[kind].__name__}({kw}), base lr {BASE_LR}"

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"cases": json.dumps(meta, sort_keys=True)})
    print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
