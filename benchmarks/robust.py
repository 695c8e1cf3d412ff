"""Step time of the robust-training wrappers relative to the plain step, on one model.

The model is a small transformer text classifier (token + learned position embeddings,
``torch.nn.TransformerEncoder``, mean pooling, linear head) in training mode, on batches
of 32 x 64 token ids. Each case times one call of the step (forward + backward(s),
gradients filled; the optimiser step, identical for all, is left out so it cannot
flatter the ratios). Cases alternate inside every repeat; the headline is the ratio of
medians wrapper / plain, against the targets of the issue (FGM <= 2.05x, gradient
penalty <= 2.8x, VAT with one power iteration <= 3.1x), with dropout 0.1 (the usual
fine-tuning setting; on CPU the dropout masks make the forward pass relatively
expensive, which weighs on every wrapper that runs extra forwards) and, in the full
run, again with dropout 0 (where the plain step uses the fused SDPA kernel and the
gradient penalty must fall back to the twice-differentiable math kernel).

Run: python benchmarks/robust.py [--quick]   (writes benchmarks/results/robust.json)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import alternate, medians, ratio
from torch import nn

from kexue.train import FGM, VAT, GradientPenaltyStep, NoiseConsistency, plain_step

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "robust.json"
TARGETS = {"fgm_author": 2.05, "fgm_common": 2.05, "gradient_penalty": 2.8, "vat_r1": 3.1}


class Classifier(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, heads: int, seq: int,
                 dropout: float, classes: int = 2) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, hidden)
        self.positions = nn.Parameter(torch.randn(seq, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden, classes)

    def get_input_embeddings(self) -> nn.Module:
        return self.tokens

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.tokens(ids) + self.positions[: ids.shape[1]]  # (batch, seq, hidden)
        return self.head(self.encoder(h).mean(1))  # (batch, classes)


def loss_fn(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and the logits (step protocol v2: VAT and noise consistency reuse them
    as the clean prediction instead of running the model once more)."""
    ids, labels = batch
    logits = model(ids)
    return F.cross_entropy(logits, labels), logits


def predict(model: nn.Module, batch) -> torch.Tensor:
    return model(batch[0])


def time_cases(dropout: float, sizes: tuple[int, int, int, int], repeats: int,
               warmup: int) -> tuple[float, dict[str, float]]:
    """Median seconds of the plain step and the ratio of every other case to it."""
    vocab, hidden, layers, heads = sizes
    batch_size, seq = 32, 64
    torch.manual_seed(0)
    model = Classifier(vocab, hidden, layers, heads, seq, dropout)
    model.train()
    batch = (torch.randint(0, vocab, (batch_size, seq)), torch.randint(0, 2, (batch_size,)))
    cases = {
        "plain": (plain_step, batch),
        "fgm_author": (FGM(model, 0.5), batch),
        "fgm_common": (FGM(model, 0.5, variant="common"), batch),
        "fgm_output_per_example": (FGM(model, 0.5, where="output", norm="per_example"), batch),
        "gradient_penalty": (GradientPenaltyStep(model, 1.0), batch),
        "vat_r1": (VAT(model, predict_fn=predict), batch),  # supervised + VAT, same batch
        "vat_r1_unlabelled_only": (VAT(model, predict_fn=predict), {"unlabelled": batch}),
        "noise_consistency": (NoiseConsistency(model, 0.01, predict_fn=predict), batch),
    }

    def run(step, b) -> None:
        model.zero_grad(set_to_none=True)
        step(model, b, loss_fn)

    times = alternate({name: (lambda s=step, b=b: run(s, b)) for name, (step, b) in cases.items()},
                      repeats, 1, warmup)
    med = medians(times)
    return med["plain"], {name: ratio(times, name, "plain") for name in cases if name != "plain"}


def main(out_path: str | Path | None = None, quick: bool = False) -> dict:
    torch.set_num_threads(2)
    sizes = (2000, 64, 1, 4) if quick else (5000, 128, 2, 4)
    repeats, warmup = (5, 1) if quick else (9, 2)
    dropouts = (0.1,) if quick else (0.1, 0.0)
    runs = {}
    for dropout in dropouts:
        plain, ratios = time_cases(dropout, sizes, repeats, warmup)
        runs[f"dropout={dropout}"] = {"plain_step_seconds": plain, "ratio_to_plain": ratios}
    headline = runs["dropout=0.1"]["ratio_to_plain"]
    result = {
        "setup": {"model": "token + position embeddings, TransformerEncoder (pre-LN) with "
                           f"{sizes[2]} layer(s), hidden {sizes[1]}, {sizes[3]} heads, vocab "
                           f"{sizes[0]}, mean pooling, linear head; training mode",
                  "batch": [32, 64], "threads": torch.get_num_threads(), "repeats": repeats,
                  "warmup": warmup, "torch": torch.__version__, "quick": quick,
                  "timed": "one step call (forward + backward(s)); no optimiser step"},
        "runs": runs,
        "targets": TARGETS,
        "within_target": {name: headline[name] <= target for name, target in TARGETS.items()},
    }
    names = list(headline)
    print(f"{'step / plain step':<26}" + "".join(f"{k:>16}" for k in runs) + f"{'target':>10}")
    for name in names:
        target = TARGETS.get(name)
        print(f"{name:<26}" + "".join(f"{r['ratio_to_plain'][name]:>15.2f}x" for r in runs.values())
              + f"{(f'<= {target}x' if target else ''):>10}")
    print(f"{'(plain step, ms)':<26}"
          + "".join(f"{1000 * r['plain_step_seconds']:>16.1f}" for r in runs.values()))
    out = Path(out_path) if out_path is not None else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller model, fewer repeats")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    main(args.out, quick=args.quick)
    sys.exit(0)
