"""Explanation speed: integrated gradients vs captum, HSIC vs hyppo, in one run.

- Integrated gradients (积分梯度, https://kexue.fm/archives/7533): per-sentence
  attribution at MiniLM's token embeddings (``kexue.models.Bert`` from the shipped
  all-MiniLM-L6-v2 weights, mean pooling, a fixed random 2-way head, eval mode), the
  reference input being all ``[PAD]`` ids, 50 steps of the same quadrature rule:
  ``kexue.explain.layer_integrated_gradients`` vs captum's ``LayerIntegratedGradients``
  with ``return_convergence_delta=True``. Both run one forward/backward over the 50
  interpolated copies of the sentence; captum adds four single-sentence forwards (the
  layer's output for the input and for the reference, and ``F`` at both ends for the
  delta), kexue none (the end points ride along in the batched pass). Agreement: max abs
  difference of the attributions and of the deltas.
- HSIC (HSIC简介, https://kexue.fm/archives/6910): the statistic at n = 1000 and 5000
  (hyppo ``Hsic().statistic``, the normalised unbiased estimator, vs
  ``kexue.explain.hsic(..., estimator="unbiased", normalized=True)``) and the
  1000-permutation test at n = 1000 (hyppo ``Hsic().test(reps=1000, auto=False)`` vs
  ``kexue.explain.hsic_test``) with 1-d samples (where kexue's kernels have a low-rank
  factor) and with 8-d x (where they do not), on y = x^2 + noise (weak for the test, so
  that the p-values are not all at their floor). kexue's timed call of the statistic uses its own
  bandwidth convention (each variable's median distance: one more median than hyppo,
  which applies x's median to both); agreement is measured with hyppo's convention.

The contenders alternate inside every repeat (``_timing.alternate``); ratios are the
median over repeats of peer time / kexue time (> 1: kexue faster).
Run: python benchmarks/explain.py [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from _timing import alternate, medians, ratio

from kexue.data import WordPieceTokenizer, load_sst2, minilm_path
from kexue.experiments._shared.minilm_classifier import build
from kexue.explain import hsic, hsic_test, layer_integrated_gradients

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "explain.json"
TARGETS = {"ig_vs_captum": 2.0, "hsic_statistic_vs_hyppo": 3.0, "hsic_test_vs_hyppo": 20.0}


def bench_integrated_gradients(quick: bool) -> dict:
    from captum.attr import LayerIntegratedGradients

    model = build(2, seed=0).eval()  # MiniLM, mean pooling, a random linear head
    tokenizer = WordPieceTokenizer.from_pretrained(minilm_path())
    rng = np.random.default_rng(0)
    test = load_sst2("test")
    count = 3 if quick else 8
    texts = [test[i][0] for i in rng.choice(len(test), count, replace=False)]
    sentences = [tokenizer.batch_encode([t]) for t in texts]
    layer = model.bert.embeddings.word
    captum_lig = LayerIntegratedGradients(model, layer)
    results = {}
    methods = ("gausslegendre",) if quick else ("gausslegendre", "riemann_trapezoid")
    for method in methods:
        outputs: dict[str, list] = {"captum": [], "kexue": []}

        def run_captum(keep: bool = False, method: str = method, outputs: dict = outputs) -> None:
            for s in sentences:
                ids, mask = s["input_ids"], s["attention_mask"]
                out = captum_lig.attribute(
                    ids, torch.full_like(ids, tokenizer.pad_token_id), target=1,
                    additional_forward_args=(mask,), n_steps=50, method=method,
                    return_convergence_delta=True)
                if keep:
                    outputs["captum"].append(out)

        def run_kexue(keep: bool = False, method: str = method, outputs: dict = outputs) -> None:
            for s in sentences:
                ids, mask = s["input_ids"], s["attention_mask"]
                with torch.no_grad():
                    reference = layer(torch.full_like(ids, tokenizer.pad_token_id))
                out = layer_integrated_gradients(model, layer, (ids, mask), reference, steps=50,
                                                 method=method, target=1)
                if keep:
                    outputs["kexue"].append(out)

        run_captum(keep=True)
        run_kexue(keep=True)
        times = alternate({"captum": run_captum, "kexue": run_kexue},
                          repeats=3 if quick else 7, warmup=1)
        med = medians(times)
        pairs = list(zip(outputs["captum"], outputs["kexue"]))
        results[method] = {
            "seconds_per_sentence": {k: v / count for k, v in med.items()},
            "speedup": ratio(times, "captum", "kexue"),
            "max_abs_diff_attributions": max(float((c[0] - k[0]).abs().max()) for c, k in pairs),
            "max_abs_diff_delta": max(float((c[1] - k[1]).abs().max()) for c, k in pairs),
            "median_abs_delta": {
                "captum": float(np.median([float(c[1].abs()) for c, _ in pairs])),
                "kexue": float(np.median([float(k[1].abs()) for _, k in pairs])),
            },
        }
    lengths = [int(s["input_ids"].shape[1]) for s in sentences]
    return {"sentences": count, "tokens": lengths, "steps": 50, "target_class": 1,
            "methods": results}


def numpy_median_distance(a: np.ndarray) -> float:
    """hyppo's bandwidth: the median off-diagonal distance of x (used for both kernels)."""
    from scipy.spatial.distance import pdist

    return float(np.median(pdist(a)))


def bench_hsic(quick: bool) -> dict:
    from hyppo.independence import Hsic

    rng = np.random.default_rng(0)
    out: dict = {"statistic": {}, "test": {}}
    for n in (300, 1000) if quick else (1000, 5000):
        x = rng.normal(size=(n, 1))
        y = x**2 + rng.normal(size=(n, 1))
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        times = alternate({
            "hyppo": lambda x=x, y=y: Hsic().statistic(x, y),
            "kexue": lambda x=tx, y=ty: hsic(x, y, estimator="unbiased", normalized=True),
        }, repeats=5 if quick else 9, warmup=1)
        theirs = Hsic().statistic(x, y)
        ours = hsic(tx, ty, bandwidth=("median", numpy_median_distance(x)),
                    estimator="unbiased", normalized=True).item()
        out["statistic"][f"n={n}"] = {"seconds": medians(times),
                                      "speedup": ratio(times, "hyppo", "kexue"),
                                      "hyppo": theirs, "kexue": ours,
                                      "abs_diff": abs(theirs - ours)}
    n, reps = (300, 200) if quick else (1000, 1000)
    cases = {  # 1-d samples: low-rank kernels; 8-d x: (n, n) matrices and gathers
        "1-d": rng.normal(size=(n, 1)),
        "8-d x": rng.normal(size=(n, 8)),
    }
    for case, x in cases.items():
        y = 0.05 * x[:, :1] ** 2 + rng.normal(size=(n, 1))
        out["test"][case] = time_test(x, y, reps, repeats=2 if quick else 3)
    return out


def time_test(x: np.ndarray, y: np.ndarray, reps: int, repeats: int) -> dict:
    """hyppo ``Hsic().test(auto=False)`` vs ``hsic_test`` (hyppo's bandwidths), in turns."""
    from hyppo.independence import Hsic

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    bandwidth = ("median", numpy_median_distance(x))
    found: dict[str, float] = {}

    def run_hyppo() -> None:
        found["hyppo"] = float(Hsic().test(x, y, reps=reps, auto=False).pvalue)

    def run_kexue() -> None:
        found["kexue"] = hsic_test(tx, ty, reps, bandwidth=bandwidth, estimator="unbiased").pvalue

    times = alternate({"hyppo": run_hyppo, "kexue": run_kexue}, repeats=repeats, warmup=0)
    p = found["hyppo"]
    return {"n": len(x), "features": [x.shape[1], y.shape[1]], "permutations": reps,
            "seconds": medians(times), "speedup": ratio(times, "hyppo", "kexue"),
            "pvalue": found, "pvalue_monte_carlo_se": float(np.sqrt(p * (1 - p) / reps))}


def main(out_path: str | Path | None = None, quick: bool = False) -> dict:
    torch.set_num_threads(2)
    t0 = time.time()
    ig = bench_integrated_gradients(quick)
    hs = bench_hsic(quick)
    gl = ig["methods"]["gausslegendre"]
    stat_speedups = [v["speedup"] for v in hs["statistic"].values()]
    result = {
        "setup": {"threads": torch.get_num_threads(), "torch": torch.__version__, "quick": quick,
                  "model": "all-MiniLM-L6-v2 (kexue Bert) + mean pooling + random 2-way head",
                  "seconds": round(time.time() - t0, 1)},
        "integrated_gradients": ig,
        "hsic": hs,
        "targets": TARGETS,
        "within_target": {
            "ig_vs_captum": gl["speedup"] >= TARGETS["ig_vs_captum"]
            and gl["median_abs_delta"]["kexue"] <= gl["median_abs_delta"]["captum"] * 1.001,
            "hsic_statistic_vs_hyppo": min(stat_speedups) >= TARGETS["hsic_statistic_vs_hyppo"],
            "hsic_test_vs_hyppo": hs["test"]["1-d"]["speedup"] >= TARGETS["hsic_test_vs_hyppo"],
        },
    }
    for method, r in ig["methods"].items():
        s = r["seconds_per_sentence"]
        print(f"IG {method:<18} captum {s['captum']:.3f} s/sentence  kexue {s['kexue']:.3f}  "
              f"speed-up {r['speedup']:.2f}x  max|diff| {r['max_abs_diff_attributions']:.1e}  "
              f"median|delta| {r['median_abs_delta']['captum']:.1e} / "
              f"{r['median_abs_delta']['kexue']:.1e}")
    for key, r in hs["statistic"].items():
        print(f"HSIC statistic {key:<7} hyppo {r['seconds']['hyppo']:.3f} s  kexue "
              f"{r['seconds']['kexue']:.3f} s  speed-up {r['speedup']:.1f}x  |diff| "
              f"{r['abs_diff']:.1e}")
    for case, t in hs["test"].items():
        print(f"HSIC test {case} n={t['n']} x {t['permutations']}: hyppo "
              f"{t['seconds']['hyppo']:.2f} s  kexue {t['seconds']['kexue']:.3f} s  speed-up "
              f"{t['speedup']:.1f}x  p {t['pvalue']}")
    print("within target:", result["within_target"])
    out = Path(out_path) if out_path is not None else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sentences, smaller n")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    main(args.out, quick=args.quick)
    sys.exit(0)
