"""Cost of each attention option relative to plain SDPA attention, forward + backward.

One causal self-attention layer (``kexue.nn.MultiHeadAttention``, hidden 256, 8 heads,
batch 2) with RoPE at sequence lengths 512 and 2048 (``--quick``: 128 and 512):

- ``sdpa``: plain RoPE, ``F.scaled_dot_product_attention`` (the reference, ratio 1);
- ``explicit``: the same maths materialising the logits (``use_sdpa=False``);
- ``entropy-scale``: ``scale="entropy"`` (per-query scale folded into q, SDPA);
- ``ntk+logn`` / ``yarn``: extrapolation frequencies and log-n query scaling (SDPA);
- ``window``: sliding-window mask of 128 (SDPA with a boolean mask);
- ``key-size-64``: 8 heads with key_size 64 instead of 32 (SDPA);
- ``talking-heads``: learned head mixing before and after the softmax (explicit path);
- ``rerope`` / ``leaky-rerope``: the two-pass logits of ReRoPE (explicit path).

Each repeat times every option once (interleaved), the headline is the median over
repeats of the ratio option / sdpa. 2 threads, warm-up, median of >= 5 repeats.
Run: ``python benchmarks/attention.py [--quick]`` (writes ``benchmarks/results/attention.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from _timing import alternate, ratio

from kexue.nn import MultiHeadAttention, RoPE, window_mask

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "attention.json"
HIDDEN, HEADS, BATCH = 256, 8, 2


def _options(seq: int) -> dict[str, tuple[dict, RoPE, torch.Tensor | None]]:
    d = HIDDEN // HEADS
    plain = RoPE(d)
    train = max(2, seq // 4)
    return {
        "sdpa": ({}, plain, None),
        "explicit": ({"use_sdpa": False}, plain, None),
        "entropy-scale": ({"scale": "entropy"}, plain, None),
        "ntk+logn": ({}, RoPE(d, variant="ntk", train_length=train, log_n=True), None),
        "yarn": ({}, RoPE(d, variant="yarn", train_length=train), None),
        "window": ({}, plain, window_mask(seq, 128)),
        "key-size-64": ({"key_size": 64}, RoPE(64), None),
        "talking-heads": ({"talking_heads": True}, plain, None),
        "rerope": ({}, RoPE(d, variant="rerope", window=train // 2), None),
        "leaky-rerope": ({}, RoPE(d, variant="leaky-rerope", window=train // 4, leak=16.0), None),
    }


def _runner(kwargs: dict, rope: RoPE, mask: torch.Tensor | None, seq: int):
    torch.manual_seed(0)
    attn = MultiHeadAttention(HIDDEN, HEADS, **kwargs)
    x = torch.randn(BATCH, seq, HIDDEN, requires_grad=True)
    positions = torch.arange(seq)

    def step():
        rotary = rope(positions)  # the angles are part of the cost
        y, _ = attn(x, mask, is_causal=True, rotary=rotary)
        y.sum().backward()
        attn.zero_grad(set_to_none=True)
        x.grad = None

    return step


def measure(seq: int, repeats: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    runners = {name: _runner(*opt, seq) for name, opt in _options(seq).items()}
    times = alternate(runners, repeats, 1, warmup)
    return {name: {"median_ms": 1e3 * statistics.median(ts),
                   "ratio_vs_sdpa": ratio(times, name, "sdpa")}
            for name, ts in times.items()}


def main(out_path: str | Path | None = None, quick: bool = False) -> dict:
    torch.set_num_threads(2)
    seqs = (128, 512) if quick else (512, 2048)
    repeats = 5 if quick else 7
    results = {"config": {"hidden": HIDDEN, "heads": HEADS, "batch": BATCH, "threads": 2,
                          "repeats": repeats, "quick": quick, "torch": torch.__version__},
               "seq": {}}
    for seq in seqs:
        results["seq"][str(seq)] = measure(seq, repeats)
    names = list(results["seq"][str(seqs[0])])
    print(f"{'option':16s}" + "".join(f"  ratio@{s:<6d}" for s in seqs)
          + "".join(f"  ms@{s:<8d}" for s in seqs))
    for name in names:
        row = [results["seq"][str(s)][name] for s in seqs]
        print(f"{name:16s}" + "".join(f"  {r['ratio_vs_sdpa']:<12.2f}" for r in row)
              + "".join(f"  {r['median_ms']:<11.1f}" for r in row))
    out = Path(out_path) if out_path else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes (128 and 512)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    main(args.out, quick=args.quick)
