"""Sentence-embedding speed: CoSENT, SentenceEncoder and streamed whitening vs their peers.

1. ``cosent_loss_from_embeddings`` forward + backward vs sentence-transformers'
   ``CoSENTLoss.compute_loss_from_embeddings`` (its formula code path, given embeddings) at
   B = 64, 256, 1024 pairs of 384-d vectors; kexue's literal O(B^2) reference form is timed
   too. The two run alternately inside every repeat; loss and gradient differences are
   reported beside the times.
2. ``SentenceEncoder.encode`` vs ``SentenceTransformer.encode`` on all-MiniLM-L6-v2 over
   STS-B test sentences (same batch size, both normalised), sentences per second; the max
   abs difference of the vectors is reported.
3. ``Whitening.partial_fit`` on 1,000,000 x 384 float32 vectors generated chunk by chunk
   (never held in memory), in a fresh process so its peak RSS is its own; the recovered
   covariance is checked against the generating one.

Headline: ratios peer / kexue of the median times (> 1: kexue faster).
Run: python benchmarks/embeddings.py [--quick]   (writes benchmarks/results/embeddings.json)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _memory import status_mb
from _timing import alternate, medians

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "embeddings.json"


def _alternate(fns: dict, repeats: int, inner: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each fn; the fns alternate inside every repeat."""
    return medians(alternate(fns, repeats, inner, warmup))


# ----------------------------------------------------------------------------- 1. CoSENT


def _cosent_case(batch: int, dim: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The three forward + backward steps on one random batch of (batch, dim) embeddings."""
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    from kexue.losses import cosent_loss_from_embeddings, cosent_loss_pairwise, pair_cosine

    peer = CoSENTLoss(model=None, scale=20.0)
    g = torch.Generator().manual_seed(batch)
    u = torch.randn(batch, dim, generator=g).requires_grad_()
    v = torch.randn(batch, dim, generator=g).requires_grad_()
    labels = torch.rand(batch, generator=g) * 5

    def step(loss_fn):
        def run():
            u.grad = v.grad = None
            loss = loss_fn()
            loss.backward()
            return loss
        return run

    fns = {
        "kexue": step(lambda: cosent_loss_from_embeddings(u, v, labels)),
        "sentence_transformers": step(lambda: peer.compute_loss_from_embeddings([u, v], labels)),
        "kexue_pairwise": step(lambda: cosent_loss_pairwise(pair_cosine(u, v), labels)),
    }
    return fns, u, v


def bench_cosent(batches: tuple[int, ...], repeats: int, dim: int = 384) -> list[dict]:
    rows = []
    for batch in batches:
        fns, u, v = _cosent_case(batch, dim)
        results = {}
        for name, fn in fns.items():
            loss = fn().item()
            results[name] = (loss, u.grad.clone(), v.grad.clone())
        inner = max(5, 20_000 // batch)
        t = _alternate(fns, repeats=repeats, inner=inner)
        k, p = results["kexue"], results["sentence_transformers"]
        rows.append({
            "batch": batch,
            "kexue_us": 1e6 * t["kexue"],
            "sentence_transformers_us": 1e6 * t["sentence_transformers"],
            "kexue_pairwise_us": 1e6 * t["kexue_pairwise"],
            "speedup_vs_st": t["sentence_transformers"] / t["kexue"],
            "pairwise_speedup_vs_st": t["sentence_transformers"] / t["kexue_pairwise"],
            "loss_abs_diff": abs(k[0] - p[0]),
            "grad_max_abs_diff": max((k[1] - p[1]).abs().max().item(),
                                     (k[2] - p[2]).abs().max().item()),
        })
    return rows


# ----------------------------------------------------------------------------- 2. encoder


def bench_encoder(n_sentences: int, batch_size: int, repeats: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from kexue.data import load_stsb, minilm_path
    from kexue.embed import SentenceEncoder

    seen, sentences = set(), []
    for a, b, _ in load_stsb("test", lang="en"):
        for s in (a, b):
            if s not in seen and len(sentences) < n_sentences:
                seen.add(s)
                sentences.append(s)
    ours = SentenceEncoder.from_pretrained(minilm_path(), pooling="mean", normalize=True)
    peer = SentenceTransformer(str(minilm_path()), device="cpu")
    fns = {
        "kexue": lambda: ours.encode(sentences, batch_size=batch_size, progress=False),
        "sentence_transformers": lambda: peer.encode(
            sentences, batch_size=batch_size, show_progress_bar=False
        ),
    }
    diff = float(np.abs(fns["kexue"]() - fns["sentence_transformers"]()).max())
    t = _alternate(fns, repeats=repeats, inner=1, warmup=1)
    return {
        "n_sentences": len(sentences),
        "batch_size": batch_size,
        "model_class": f"{type(ours.model).__module__}.{type(ours.model).__name__}",
        "kexue_sentences_per_s": len(sentences) / t["kexue"],
        "sentence_transformers_sentences_per_s": len(sentences) / t["sentence_transformers"],
        "speedup_vs_st": t["sentence_transformers"] / t["kexue"],
        "max_abs_diff": diff,
    }


# ----------------------------------------------------------------------------- 3. whitening


def _whitening_child(n_rows: int, dim: int, chunk: int) -> None:
    torch.set_num_threads(2)
    from kexue.embed import Whitening

    rss_before = status_mb("VmRSS")
    rng = np.random.default_rng(0)
    mixing = (rng.normal(size=(dim, dim)) * np.logspace(0, -1.5, dim)).astype(np.float32)
    mean = rng.normal(size=dim).astype(np.float32)
    w = Whitening(n_components=256)
    t0 = time.perf_counter()
    generate = 0.0
    for start in range(0, n_rows, chunk):
        g0 = time.perf_counter()
        rows = min(chunk, n_rows - start)
        x = rng.standard_normal((rows, dim), dtype=np.float32) @ mixing.T + mean  # (rows, dim)
        generate += time.perf_counter() - g0
        w.partial_fit(x)
    kernel = w.kernel_  # the deferred SVD
    seconds = time.perf_counter() - t0
    peak = status_mb("VmHWM")
    true_cov = mixing.astype(np.float64) @ mixing.T.astype(np.float64)
    rel_err = np.linalg.norm(w.covariance_ - true_cov) / np.linalg.norm(true_cov)
    print(json.dumps({
        "n_rows": n_rows,
        "dim": dim,
        "chunk_rows": chunk,
        "n_components": kernel.shape[1],
        "seconds_total": seconds,
        "seconds_generating": generate,
        "seconds_fitting": seconds - generate,
        "rows_per_s_fitting": n_rows / (seconds - generate),
        "peak_rss_mb": peak,
        "rss_before_fit_mb": rss_before,
        "peak_rss_increase_mb": peak - rss_before,
        "dense_float64_matrix_mb": n_rows * dim * 8 / 2**20,
        "covariance_rel_error_vs_generating": float(rel_err),
    }))


def bench_whitening(n_rows: int, dim: int = 384, chunk: int = 10_000) -> dict:
    """Run :func:`_whitening_child` in a fresh interpreter (its VmHWM is its own) and
    read the JSON line it prints."""
    spec = json.dumps([n_rows, dim, chunk])
    out = subprocess.run([sys.executable, __file__, "--whitening-child", spec],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def main(out_path: str | Path | None = None, quick: bool = False) -> dict:
    torch.set_num_threads(2)
    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": quick,
        "cosent": bench_cosent((64, 256, 1024), repeats=5 if quick else 9),
        "encoder": bench_encoder(128 if quick else 400, batch_size=64, repeats=5),
        "whitening": bench_whitening(100_000 if quick else 1_000_000),
    }
    print("\nCoSENT forward+backward, (B, 384) embeddings; ratio = ST time / kexue time")
    print(f"{'B':>6} {'kexue us':>10} {'ST us':>10} {'pairwise us':>12} {'ratio':>7} {'|dloss|':>9}")
    for r in result["cosent"]:
        print(f"{r['batch']:>6} {r['kexue_us']:>10.0f} {r['sentence_transformers_us']:>10.0f} "
              f"{r['kexue_pairwise_us']:>12.0f} {r['speedup_vs_st']:>7.2f} {r['loss_abs_diff']:>9.1e}")
    e = result["encoder"]
    print(f"\nencode MiniLM, {e['n_sentences']} STS-B sentences, batch {e['batch_size']} "
          f"({e['model_class']}): kexue {e['kexue_sentences_per_s']:.0f}/s, "
          f"ST {e['sentence_transformers_sentences_per_s']:.0f}/s, ratio {e['speedup_vs_st']:.2f}, "
          f"max |diff| {e['max_abs_diff']:.1e}")
    w = result["whitening"]
    print(f"\nwhitening partial_fit {w['n_rows']:,} x {w['dim']} in chunks of {w['chunk_rows']:,}: "
          f"{w['seconds_fitting']:.1f} s fitting (+{w['seconds_generating']:.1f} s generating), "
          f"peak RSS {w['peak_rss_mb']:.0f} MB (+{w['peak_rss_increase_mb']:.0f} MB over the "
          f"{w['rss_before_fit_mb']:.0f} MB before fitting; "
          f"the dense float64 matrix would be {w['dense_float64_matrix_mb']:.0f} MB), "
          f"covariance rel. error {w['covariance_rel_error_vs_generating']:.1e}")
    out = Path(out_path) if out_path else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sentences and rows")
    parser.add_argument("--out", default=None)
    parser.add_argument("--whitening-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.whitening_child:
        _whitening_child(*json.loads(args.whitening_child))
    else:
        main(args.out, quick=args.quick)
    sys.exit(0)
