"""Explanation speed: integrated gradients vs captum, HSIC vs hyppo, in one run.

- Integrated gradients (积分梯度, https://kexue.fm/archives/7533): attribution at MiniLM's
  token embeddings (``kexue.models.Bert`` from the shipped all-MiniLM-L6-v2 weights, mean
  pooling, a fixed random 2-way head, eval mode), the reference input being all ``[PAD]``
  ids, 50 steps of the same quadrature rule: ``kexue.explain.layer_integrated_gradients``
  (defaults) vs captum's ``LayerIntegratedGradients`` with
  ``return_convergence_delta=True``. Per sentence, on the same model: both run one
  forward/backward over the 50 interpolated copies of the sentence; captum adds four
  single-sentence forwards (the layer's output for the input and for the reference, and
  ``F`` at both ends for the delta), kexue none (the end points ride along in the batched
  pass). Eight sentences per call (padded to the longest): captum with its default (all
  400 points in one pass), captum given kexue's pass size (``internal_batch_size``), and
  captum on the same classifier built on transformers' ``BertModel`` (the usual stack).
  Agreement: max abs difference of the attributions and of the deltas.
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
from kexue.embed import masked_mean
from kexue.experiments._shared.minilm_classifier import build
from kexue.explain import hsic, hsic_test, layer_integrated_gradients
from kexue.explain.integrated_gradients import AUTO_TOKENS

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
    pad = tokenizer.pad_token_id

    def captum_call(lig, ids, mask, method, internal_batch_size=None):
        return lig.attribute(ids, torch.full_like(ids, pad), target=1,
                             additional_forward_args=(mask,), n_steps=50, method=method,
                             internal_batch_size=internal_batch_size,
                             return_convergence_delta=True)

    def kexue_call(ids, mask, method):
        with torch.no_grad():
            reference = layer(torch.full_like(ids, pad))
        return layer_integrated_gradients(model, layer, (ids, mask), reference, steps=50,
                                          method=method, target=1)

    results = {}
    methods = ("gausslegendre",) if quick else ("gausslegendre", "riemann_trapezoid")
    for method in methods:
        fns = {
            "captum": lambda m=method: [captum_call(captum_lig, s["input_ids"],
                                                    s["attention_mask"], m) for s in sentences],
            "kexue": lambda m=method: [kexue_call(s["input_ids"], s["attention_mask"], m)
                                       for s in sentences],
        }
        results[method] = compare(fns, count, repeats=3 if quick else 7)
    lengths = [int(s["input_ids"].shape[1]) for s in sentences]
    batch = tokenizer.batch_encode(texts)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    hf_model = HFClassifier(model.head).eval()
    hf_lig = LayerIntegratedGradients(hf_model, hf_model.bert.embeddings.word_embeddings)
    rows = AUTO_TOKENS // ids.shape[1]  # kexue's points per pass: captum given the same
    batched = compare({
        "captum": lambda: captum_call(captum_lig, ids, mask, "gausslegendre"),
        "captum, same pass size": lambda: captum_call(captum_lig, ids, mask, "gausslegendre",
                                                      internal_batch_size=rows),
        "captum + transformers": lambda: captum_call(hf_lig, ids, mask, "gausslegendre"),
        "kexue": lambda: kexue_call(ids, mask, "gausslegendre"),
    }, count, repeats=3 if quick else 5)
    return {"sentences": count, "tokens": lengths, "steps": 50, "target_class": 1,
            "methods": results, "batch_of_sentences": batched}


def compare(fns: dict, count: int, repeats: int) -> dict:
    """Time the contenders in turns; agreement of each peer with kexue, sentence by sentence."""
    per_sentence = {name: by_sentence(fn()) for name, fn in fns.items()}
    times = alternate(fns, repeats=repeats, warmup=1)
    ours = per_sentence["kexue"]
    peers = [name for name in fns if name != "kexue"]

    def max_diff(name: str, part: int) -> float:
        return max(float((t[part] - o[part]).abs().max()) for t, o in zip(per_sentence[name], ours))

    return {
        "seconds_per_sentence": {k: v / count for k, v in medians(times).items()},
        "speedup": {name: ratio(times, name, "kexue") for name in peers},
        "max_abs_diff_attributions": {name: max_diff(name, 0) for name in peers},
        "max_abs_diff_delta": {name: max_diff(name, 1) for name in peers},
        "median_abs_delta": {name: float(np.median([float(d.abs()) for _, d in out]))
                             for name, out in per_sentence.items()},
    }


def by_sentence(out) -> list:
    """(attributions, delta) per sentence, from a list of per-sentence results or one batch."""
    if isinstance(out, list):
        return [(a, d) for a, d in out]
    attributions, delta = out
    return list(zip(attributions, delta))


class HFClassifier(torch.nn.Module):
    """The same classifier on transformers' ``BertModel`` (SDPA): the usual captum stack."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        from transformers import BertModel
        from transformers.utils import logging

        logging.set_verbosity_error()  # the checkpoint's unused pooler weights
        self.bert = BertModel.from_pretrained(minilm_path(), attn_implementation="sdpa",
                                              add_pooling_layer=False)
        self.head = head

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(masked_mean(self.bert(input_ids=ids, attention_mask=mask).last_hidden_state,
                                     mask))


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
            "ig_vs_captum": gl["speedup"]["captum"] >= TARGETS["ig_vs_captum"]
            and gl["median_abs_delta"]["kexue"] <= gl["median_abs_delta"]["captum"] * 1.001,
            "hsic_statistic_vs_hyppo": min(stat_speedups) >= TARGETS["hsic_statistic_vs_hyppo"],
            "hsic_test_vs_hyppo": hs["test"]["1-d"]["speedup"] >= TARGETS["hsic_test_vs_hyppo"],
        },
    }
    for method, r in ig["methods"].items():
        print_ig(f"IG per sentence, {method}", r)
    print_ig("IG 8 sentences per call, gausslegendre", ig["batch_of_sentences"])
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


def print_ig(title: str, r: dict) -> None:
    s = r["seconds_per_sentence"]
    print(f"{title}: kexue {s['kexue']:.3f} s/sentence, median|delta| "
          f"{r['median_abs_delta']['kexue']:.1e}")
    for name, speedup in r["speedup"].items():
        print(f"  {name:<24} {s[name]:.3f} s/sentence  speed-up {speedup:.2f}x  max|diff| "
              f"{r['max_abs_diff_attributions'][name]:.1e}  median|delta| "
              f"{r['median_abs_delta'][name]:.1e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sentences, smaller n")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    main(args.out, quick=args.quick)
    sys.exit(0)
