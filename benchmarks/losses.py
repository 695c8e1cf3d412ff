"""Speed of kexue's imbalance / multilabel / logit-adjusted / multi-task losses vs their peers.

Each case times forward + backward of one loss on the same inputs for kexue and for the
nearest existing implementation: torch's own ``F.cross_entropy`` /
``F.binary_cross_entropy_with_logits`` where the loss is a re-weighted CE, and a direct
textbook formula written here where torch has no such loss (focal: torchvision is not
installable beside this CPU torch build; soft Dice; the post's own multilabel CE). The
multilabel CE is also timed against per-label BCE, a different and cheaper loss, to show
what the better loss costs. The two runs alternate inside every
repeat; the headline is the median over repeats of the ratio kexue / peer (< 1: kexue
faster), which is robust to load from other processes on a shared machine.
Where both compute the same quantity, the max abs difference of loss and gradient is
reported too.

Run: python benchmarks/losses.py [--quick]   (writes benchmarks/results/losses.json)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import alternate, medians, ratio

from kexue.losses import (
    LogitAdjustedLoss,
    MultiTaskLoss,
    class_weighted_cross_entropy,
    focal_loss,
    hard_truncation_loss,
    multilabel_categorical_crossentropy,
    smooth_f1_loss,
    sparse_multilabel_categorical_crossentropy,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "losses.json"


# ----------------------------------------------------------------------------- textbook peers
def textbook_focal(x: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """-(1 - p_t)^gamma log p_t, written the obvious way."""
    logpt = F.log_softmax(x, dim=1).gather(1, t[:, None])[:, 0]
    return (-((1 - logpt.exp()) ** gamma) * logpt).mean()


def textbook_sigmoid_focal(x: torch.Tensor, y: torch.Tensor, gamma: float, alpha: float):
    """The RetinaNet sigmoid focal loss as usually written (torchvision's formula)."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return (alpha_t * loss).mean()


def textbook_dice(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Macro soft Dice loss 1 - 2 sum(y p) / sum(y + p) per class."""
    p = torch.softmax(x, dim=1)
    y = F.one_hot(t, x.shape[1]).to(x.dtype)
    return (1 - 2 * (y * p).sum(0) / (y + p).sum(0)).mean()


def author_multilabel_ce(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The post's multilabel categorical CE as usually ported from its Keras code: signs
    flipped by the labels, the other group pushed to -1e12, a zero column concatenated
    for the threshold class, two logsumexps (kexue.fm/archives/7359)."""
    signed = (1 - 2 * y) * x
    neg, pos = signed - y * 1e12, signed - (1 - y) * 1e12
    zero = torch.zeros_like(x[..., :1])
    loss = torch.logsumexp(torch.cat([neg, zero], -1), -1) + torch.logsumexp(
        torch.cat([pos, zero], -1), -1)
    return loss.mean()


# ----------------------------------------------------------------------------- timing
def _step(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    x.grad = None
    loss = fn(x)
    loss.backward()
    return loss


def _time(fns: dict[str, Callable], x: torch.Tensor, inner: int, repeats: int, warmup: int):
    """Median seconds per call of each fn, and the median of the per-repeat ratios of the
    first fn to the second."""
    steps = {name: (lambda fn=fn: _step(fn, x)) for name, fn in fns.items()}
    times = alternate(steps, repeats, inner, warmup)
    first, second = list(fns)[:2]
    return medians(times), ratio(times, first, second)


def _parity(fn_a: Callable, fn_b: Callable, x: torch.Tensor) -> dict[str, float]:
    la = _step(fn_a, x).detach()
    ga = x.grad.clone()
    lb = _step(fn_b, x).detach()
    gb = x.grad.clone()
    return {
        "loss_abs_diff": (la - lb).abs().item(),
        "grad_max_abs_diff": (ga - gb).abs().max().item(),
    }


# ----------------------------------------------------------------------------- cases
def _cases(quick: bool):
    g = torch.Generator().manual_seed(0)
    n, c = (1024, 50) if quick else (8192, 100)
    x = (3 * torch.randn(n, c, generator=g)).requires_grad_()
    t = torch.randint(0, c, (n,), generator=g)
    xb = (3 * torch.randn(n, 32, generator=g)).requires_grad_()
    yb = (torch.rand(n, 32, generator=g) < 0.1).float()
    nm, cm = (256, 200) if quick else (2048, 500)
    xm = (3 * torch.randn(nm, cm, generator=g)).requires_grad_()
    ym = (torch.rand(nm, cm, generator=g) < 0.02).float()
    k = int(ym.sum(1).max())
    sparse = torch.full((nm, k), -1, dtype=torch.long)
    for i, row in enumerate(ym):
        idx = row.nonzero().flatten()
        sparse[i, : idx.numel()] = idx
    w = torch.rand(c, generator=g) + 0.5
    priors = torch.rand(c, generator=g) + 0.01
    priors = priors / priors.sum()
    la = LogitAdjustedLoss(priors, tau=1.0)
    mtl = MultiTaskLoss("realtime", num_tasks=3)

    def three_losses(z):
        return [F.cross_entropy(z, t), (z**2).mean(), z.abs().mean()]

    # name: (input, kexue fn, peer fn, peer name, same quantity?)
    return {
        "focal_multiclass_g2": (
            x,
            lambda z: focal_loss(z, t, gamma=2.0),
            lambda z: textbook_focal(z, t, 2.0),
            "textbook formula",
            True,
        ),
        "focal_binary_g2_a.25": (
            xb,
            lambda z: focal_loss(z, yb, gamma=2.0, alpha=0.25),
            lambda z: textbook_sigmoid_focal(z, yb, 2.0, 0.25),
            "textbook (torchvision formula)",
            True,
        ),
        "focal_g0_vs_ce": (
            x,
            lambda z: focal_loss(z, t, gamma=0.0),
            lambda z: F.cross_entropy(z, t),
            "F.cross_entropy",
            True,
        ),
        "hard_truncation_m.5": (
            x,
            lambda z: hard_truncation_loss(z, t, m=0.5),
            lambda z: F.cross_entropy(z, t),
            "F.cross_entropy",
            False,
        ),
        "smooth_f1_multiclass": (
            x,
            lambda z: smooth_f1_loss(z, t),
            lambda z: textbook_dice(z, t),
            "textbook soft Dice",
            True,
        ),
        "class_weighted_ce": (
            x,
            lambda z: class_weighted_cross_entropy(z, t, w),
            lambda z: F.cross_entropy(z, t, weight=w, reduction="sum") / z.shape[0],
            "F.cross_entropy(weight)",
            True,
        ),
        "multilabel_ce_vs_author": (
            xm,
            lambda z: multilabel_categorical_crossentropy(z, ym),
            lambda z: author_multilabel_ce(z, ym),
            "post's formula (Keras code ported)",
            True,
        ),
        "multilabel_ce_dense": (
            xm,
            lambda z: multilabel_categorical_crossentropy(z, ym),
            lambda z: F.binary_cross_entropy_with_logits(z, ym, reduction="sum") / z.shape[0],
            "F.binary_cross_entropy_with_logits",
            False,
        ),
        "multilabel_ce_sparse": (
            xm,
            lambda z: sparse_multilabel_categorical_crossentropy(z, sparse),
            lambda z: F.binary_cross_entropy_with_logits(z, ym, reduction="sum") / z.shape[0],
            "F.binary_cross_entropy_with_logits",
            False,
        ),
        "logit_adjusted_ce": (
            x,
            lambda z: la(z, t),
            lambda z: F.cross_entropy(z + priors.log(), t),
            "F.cross_entropy(x + log pi)",
            True,
        ),
        "multitask_realtime_3": (
            x,
            lambda z: mtl(three_losses(z)),
            lambda z: sum(three_losses(z)),
            "plain sum",
            False,
        ),
    }


def main(out_path: str | Path | None = None, quick: bool = False) -> dict:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    inner, repeats, warmup = (3, 5, 2) if quick else (5, 21, 3)
    results = {}
    print(
        f"{'case':24s} {'peer':36s} {'kexue ms':>9s} {'peer ms':>9s} {'ratio':>6s} {'max|dgrad|':>10s}"
    )
    for name, (x, kexue_fn, peer_fn, peer, same) in _cases(quick).items():
        med, ratio = _time({"kexue": kexue_fn, "peer": peer_fn}, x, inner, repeats, warmup)
        row = {
            "peer": peer,
            "shape": list(x.shape),
            "kexue_ms": med["kexue"] * 1e3,
            "peer_ms": med["peer"] * 1e3,
            "ratio": ratio,  # median over repeats of kexue / peer
        }
        if same:
            row.update(_parity(kexue_fn, peer_fn, x))
        results[name] = row
        diff = f"{row['grad_max_abs_diff']:.1e}" if same else "-"
        print(
            f"{name:24s} {peer:36s} {row['kexue_ms']:9.3f} {row['peer_ms']:9.3f} "
            f"{row['ratio']:6.2f} {diff:>10s}"
        )
    out = {
        "benchmark": "losses",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": quick,
        "repeats": repeats,
        "inner": inner,
        "headline": "ratio = median over repeats of kexue / peer time of forward + backward (< 1: kexue faster)",
        "cases": results,
    }
    out_path = Path(out_path) if out_path is not None else DEFAULT_OUT
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1))
    print(f"wrote {out_path}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    main(args.out, quick=args.quick)
    sys.exit(0)
