"""Helpers shared by the fixture scripts in this folder (import them from a
script run as `python3 scripts/<name>.py`)."""
import json
import math

import torch


def formula_input(shape):
    """The deterministic input the Rust tests rebuild: element i (row-major)
    is float32(sin(0.37 * i + 0.1)), computed in float64."""
    n = math.prod(shape)
    vals = [math.sin(0.37 * float(i) + 0.1) for i in range(n)]
    x = torch.tensor(vals, dtype=torch.float64).to(torch.float32)
    return x.reshape(shape).contiguous()


def canonicalize_metadata(path):
    """Rewrites a safetensors file's `__metadata__` with its keys sorted.

    safetensors serialises the metadata from a Rust HashMap, so its key order
    (and with it the file's bytes) changes from run to run although nothing
    else does. Sorting makes reruns byte-identical; the sorted order is the
    one the committed fixtures have. Only the order of the header's keys
    changes, never its length or the tensor data."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    text = data[8:8 + n].decode("utf-8")
    body = text.rstrip(" ")  # the header is space-padded to 8 bytes
    dump = lambda h: json.dumps(h, separators=(",", ":"), ensure_ascii=False)
    header = json.loads(body)
    if dump(header) != body:
        raise RuntimeError(f"{path}: unexpected safetensors header layout")
    meta = header.get("__metadata__")
    if not meta:
        return
    header["__metadata__"] = dict(sorted(meta.items()))
    new = dump(header)
    assert len(new) == len(body), path
    with open(path, "wb") as f:
        f.write(data[:8] + (new + text[len(body):]).encode("utf-8") + data[8 + n:])


def save_checked(tensors, path, metadata):
    """Writes `tensors` (made contiguous copies) as safetensors with sorted
    metadata, then reads the file back and checks every tensor round-trips
    exactly."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, path, metadata=metadata)
    canonicalize_metadata(path)
    back = load_file(path)
    assert list(back) and set(back) == set(tensors), path
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), (path, k)


def randomize_batch_norms(model, seed):
    """Seeded, non-trivial affine parameters and running statistics for
    every BatchNorm2d, so that eval mode's normalisation matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(3)
