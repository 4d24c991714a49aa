#!/usr/bin/env python3
"""Generate the cross-attention fixtures of tests/cross_attention.rs:
nn.MultiheadAttention as cross-attention (keys and values from a memory),
with a key padding mask from lengths (cross and self), and one
nn.TransformerDecoderLayer (causal self-attention, cross-attention, FFN;
post-norm, dropout 0, eval).

What it writes: tests/fixtures/cross_attention.safetensors (a few KB). No
weights are stored: every input and parameter is rebuilt in the Rust test
from the formula of scripts/gen_recurrent_fixtures.py (`formula(shape,
name)`, parameters by their state_dict names without the layer's path).

  cross.y        mha(q, mem, mem), q = formula([2, 5, 8], "q"), mem = formula([2, 7, 8], "mem")
  cross_pad.y    the same with key_padding_mask from lengths (7, 4)
  self_pad.y     mha(q, q, q) with key_padding_mask from lengths (5, 3)
  mask_bool      a boolean attn_mask [5, 7] as 0/1 (1 blocks: key j > query i + 1)
  cross_mask_bool.y   cross with that attn_mask and key_padding_mask from (7, 4)
  cross_mask_float.y  cross with the additive attn_mask formula([5, 7], "fmask")
  decoder.y      TransformerDecoderLayer(8, 2, 16)(q, mem, causal tgt mask)
  cross_kdim.y   MultiheadAttention(8, 2, kdim=6, vdim=6)(q, memk, memk),
                 memk = formula([2, 7, 6], "memk"): q_proj_weight [8, 8],
                 k_proj_weight and v_proj_weight [8, 6], in_proj_bias [24]

    python3 scripts/gen_cross_attention_fixtures.py
"""
import os

import torch
import torch.nn as nn

from fixture_common import save_checked
from gen_recurrent_fixtures import formula

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "cross_attention.safetensors")
torch.set_num_threads(1)


def filled(m):
    m = m.double().eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(formula(tuple(p.shape), name))
    return m


def pad(lengths, n):
    return torch.tensor([[j >= l for j in range(n)] for l in lengths])


def main():
    q, mem = formula((2, 5, 8), "q"), formula((2, 7, 8), "mem")
    mha = filled(nn.MultiheadAttention(8, 2, batch_first=True))
    out = {}
    with torch.no_grad():
        out["cross.y"] = mha(q, mem, mem, need_weights=False)[0]
        out["cross_pad.y"] = mha(q, mem, mem, key_padding_mask=pad([7, 4], 7), need_weights=False)[0]
        out["self_pad.y"] = mha(q, q, q, key_padding_mask=pad([5, 3], 5), need_weights=False)[0]
        # attn_mask: boolean (True blocks) and additive, [T, S]; the boolean
        # one stored as 0/1 for the Rust side.
        bmask = torch.tensor([[j > i + 1 for j in range(7)] for i in range(5)])
        fmask = formula((5, 7), "fmask")
        out["mask_bool"] = bmask.to(torch.float64)
        out["cross_mask_bool.y"] = mha(q, mem, mem, attn_mask=bmask, key_padding_mask=pad([7, 4], 7),
                                       need_weights=False)[0]
        out["cross_mask_float.y"] = mha(q, mem, mem, attn_mask=fmask, need_weights=False)[0]
        # kdim/vdim: a memory of another width (6), separate projections.
        memk = formula((2, 7, 6), "memk")
        mhak = filled(nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True))
        out["cross_kdim.y"] = mhak(q, memk, memk, need_weights=False)[0]
        dec = filled(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True))
        mask = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
        out["decoder.y"] = dec(q, mem, tgt_mask=mask, tgt_is_causal=True)
    out = {k: v.to(torch.float32) for k, v in out.items()}
    save_checked(out, OUT, {"generator": "scripts/gen_cross_attention_fixtures.py", "torch": torch.__version__})
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
