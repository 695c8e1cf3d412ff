"""Encoder speed and memory: ``kexue.models.Bert`` vs ``transformers.BertModel``.

Measured in one run, on 2 threads, with identical weights:

- training step (forward + backward + fused AdamW as ``kexue.train.fit`` runs it, the
  same optimiser for every contender, dropout on) and inference (eval,
  ``torch.inference_mode``) at the MiniLM config (batch 16 x seq 128) and the
  BERT-base config (batch 8 x seq 512), kexue vs transformers with
  ``attn_implementation="eager"`` and ``"sdpa"``; the implementations take turns
  within each repeat (round robin) so drifting machine load hits all of them alike;
  the median of >= 5 repeats after warm-up is reported;
- peak memory: max RSS of a fresh child process per (config, implementation, mode);
- recompute (节省显存的重计算技巧也有了Keras版了, 2020-04-29,
  https://kexue.fm/archives/7367) on the 12-layer config: step time, peak RSS and the
  bytes of activations autograd saves (``torch.autograd.graph.saved_tensors_hooks``,
  unique storages, parameters excluded). Claim: <= 1/3 of the saved bytes at <= 1.35x
  the step time.

Real text (issue 15): random batches of 32 sentences from STS-B and SST-2 (seeds fixed,
padded to their longest, MiniLM's tokenizer and weights), training step and inference,
kexue (unpadded) vs kexue with ``unpad=False`` vs transformers sdpa / eager, with the
max abs difference of the real tokens' outputs; ``SentenceEncoder.encode`` vs
sentence-transformers ``encode`` on the STS-B test sentences; ``torch.compile`` of
kexue's model on the real-text batches (warm-up seconds and steady-state ratio).

Headline numbers are ratios (speed-up = transformers time / kexue time).
Run ``python benchmarks/encoder.py [--quick] [--out PATH] [--sections fixed-minilm,real,...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import transformers
from _memory import status_mb
from _timing import alternate, medians

from kexue.data import available, load_sst2, load_stsb, minilm_path
from kexue.embed import SentenceEncoder
from kexue.models import Bert, BertConfig
from kexue.nn import saved_activation_bytes

transformers.logging.set_verbosity_error()

CONFIGS: dict[str, dict[str, int]] = {
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
               "intermediate_size": 1536},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072},
}  # fmt: skip
SHAPES = {"minilm": (16, 128), "base": (8, 512)}  # (batch, seq)
QUICK_SHAPES = {"minilm": (8, 64), "base": (2, 128)}
IMPLS = ("kexue", "hf-sdpa", "hf-eager")
REAL_IMPLS = ("kexue", "kexue-padded", "hf-sdpa", "hf-eager")
SECTIONS = ("fixed-minilm", "fixed-base", "recompute", "layout", "real", "encode", "compile")
DEFAULT_OUT = Path(__file__).parent / "results" / "encoder.json"


def build(impl: str, config: dict[str, int], folder: str | None = None, recompute: bool = False):
    """The model ``impl`` for ``config``; from ``folder`` (shared weights) when given."""
    if impl.startswith("kexue"):
        torch.manual_seed(0)
        if folder is not None:
            model = Bert.from_pretrained(folder, recompute=recompute)
        else:
            model = Bert(BertConfig(**config), recompute=recompute)
        model.unpad = impl != "kexue-padded"
        return model
    attn = impl.removeprefix("hf-")
    if folder is not None:
        return transformers.BertModel.from_pretrained(folder, attn_implementation=attn)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**config)
    return transformers.BertModel._from_config(cfg, attn_implementation=attn)


def make_batch(batch: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (batch, seq), generator=g)
    return ids, torch.ones(batch, seq, dtype=torch.long)


def real_batches(data: str, n: int, batch: int = 32, seed: int = 0) -> list[tuple]:
    """``n`` random batches of ``batch`` sentences of ``data`` ("stsb" or "sst2", train
    split), MiniLM-tokenized and padded to their longest: [(ids, mask), ...]."""
    from tokenizers import Tokenizer

    if data == "stsb":
        sentences = [s for a, b, _ in load_stsb("train") for s in (a, b)]
    else:
        sentences = [s for s, _ in load_sst2("train")]
    tokenizer = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        rows = torch.randperm(len(sentences), generator=g)[:batch].tolist()
        enc = tokenizer.encode_batch([sentences[i] for i in rows])
        t = max(len(e.ids) for e in enc)
        ids = torch.zeros(batch, t, dtype=torch.long)
        mask = torch.zeros(batch, t, dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)], mask[i, : len(e.ids)] = torch.tensor(e.ids), 1
        out.append((ids, mask))
    return out


def make_step(model, mode: str, ids: torch.Tensor | list, mask: torch.Tensor | None = None):
    """A closure running one training step or one inference forward per batch of ``ids``
    (a tensor with ``mask``, or a list of ``(ids, mask)`` batches)."""
    batches = ids if isinstance(ids, list) else [(ids, mask)]
    if mode == "infer":
        model.eval()

        def infer():
            with torch.inference_mode():
                for x, m in batches:
                    model(x, attention_mask=m)

        return infer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # as kexue.train.fit

    def train():
        for x, m in batches:
            out = model(x, attention_mask=m).last_hidden_state
            (out * m[..., None]).pow(2).mean().backward()  # a loss on the real tokens
            opt.step()
            opt.zero_grad(set_to_none=True)

    return train


def time_round_robin(steps: dict[str, Any], warmup: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per step; each repeat runs every implementation once."""
    return {k: 1000 * v for k, v in medians(alternate(steps, repeats, 1, warmup)).items()}


def child_peak_rss(spec: dict[str, Any]) -> dict[str, float]:
    """Run ``spec`` in a fresh interpreter; its peak RSS in MB (and after model build)."""
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _child(spec: dict[str, Any]) -> None:
    torch.set_num_threads(2)
    if spec.get("encode"):
        step = encode_step(spec["impl"], stsb_test_sentences(), spec["batch"])
    elif spec.get("data"):
        batches = real_batches(spec["data"], spec["batches"])
        model = build(spec["impl"], {}, str(minilm_path()))
        step = make_step(model, spec["mode"], batches)
    else:
        ids, mask = make_batch(spec["batch"], spec["seq"])
        model = build(spec["impl"], spec["config"], recompute=spec.get("recompute", False))
        step = make_step(model, spec["mode"], ids, mask)
    base = status_mb("VmRSS")
    for _ in range(2):
        step()
    peak = status_mb("VmHWM")
    print(json.dumps({"peak_mb": peak, "after_build_mb": base}))


def bench_config(name: str, batch: int, seq: int, warmup: int, repeats: int) -> dict[str, Any]:
    ids, mask = make_batch(batch, seq)
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        transformers.BertModel(transformers.BertConfig(**CONFIGS[name])).save_pretrained(folder)
        models = {impl: build(impl, CONFIGS[name], folder) for impl in IMPLS}
    for m in models.values():
        m.eval()
    with torch.inference_mode():
        ref = models["hf-sdpa"](ids[:2, :32]).last_hidden_state
        diff = (models["kexue"](ids[:2, :32]).last_hidden_state - ref).abs().max().item()
    result: dict[str, Any] = {"batch": batch, "seq": seq, "kexue_vs_hf_max_abs_diff": diff}
    for mode in ("train", "infer"):
        steps = {impl: make_step(m, mode, ids, mask) for impl, m in models.items()}
        result[f"{mode}_ms"] = time_round_robin(steps, warmup, repeats)
        del steps
    del models
    result["peak_rss_mb"] = {
        mode: {
            impl: child_peak_rss(
                {"config": CONFIGS[name], "impl": impl, "mode": mode, "batch": batch, "seq": seq}
            )["peak_mb"]
            for impl in IMPLS
        }
        for mode in ("train", "infer")
    }
    return result


def bench_recompute(name: str, batch: int, seq: int, warmup: int, repeats: int) -> dict[str, Any]:
    ids, mask = make_batch(batch, seq)
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        transformers.BertModel(transformers.BertConfig(**CONFIGS[name])).save_pretrained(folder)
        models = {
            "off": Bert.from_pretrained(folder),
            "on": Bert.from_pretrained(folder, recompute=True),
        }
    for m in models.values():
        m.train()
    saved = {k: saved_activation_bytes(m, lambda m=m: m(ids, attention_mask=mask).last_hidden_state)
             for k, m in models.items()}
    steps = {k: make_step(m, "train", ids, mask) for k, m in models.items()}
    ms = time_round_robin(steps, warmup, repeats)
    del steps, models
    spec = {"config": CONFIGS[name], "impl": "kexue", "mode": "train", "batch": batch, "seq": seq}
    rss = {k: child_peak_rss({**spec, "recompute": k == "on"})["peak_mb"] for k in ("off", "on")}
    saved_ratio, time_ratio = saved["on"] / saved["off"], ms["on"] / ms["off"]
    return {
        "config": name, "layers": CONFIGS[name]["num_hidden_layers"], "batch": batch, "seq": seq,
        "step_ms": ms, "saved_activation_bytes": saved, "peak_rss_mb": rss,
        "saved_ratio": saved_ratio, "time_ratio": time_ratio,
        "claim_saved_le_1_3": saved_ratio <= 1 / 3, "claim_time_le_1_35": time_ratio <= 1.35,
    }  # fmt: skip


def adamw_step_ms(repeats: int = 5) -> dict[str, float]:
    """Milliseconds of one AdamW step over MiniLM's 22.7M parameters, PyTorch's default
    (foreach) and fused: a cost every train step pays whatever the batch."""
    model = build("kexue", {}, str(minilm_path()))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    steps = {}
    for fused in (False, True):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
        steps["fused" if fused else "foreach"] = opt.step
    return time_round_robin(steps, 1, repeats)


def _real_token_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return (a - b)[mask.bool()].abs().max().item()


def _agreement(models: dict[str, Any], batch: tuple) -> dict[str, float]:
    """Max abs difference of each model's real-token outputs, and of kexue's gradients
    unpadded vs padded, from kexue's on one batch."""
    ids, mask = batch
    outs = {}
    for impl, m in models.items():
        m.eval()
        with torch.inference_mode():
            outs[impl] = m(ids, attention_mask=mask).last_hidden_state
    diff = {f"kexue_vs_{k}_max_abs_diff": _real_token_diff(outs["kexue"], v, mask)
            for k, v in outs.items() if k != "kexue"}
    grads = {}
    for impl in ("kexue", "kexue-padded"):
        m = models[impl].eval()
        m.zero_grad(set_to_none=True)
        out = m(ids, attention_mask=mask).last_hidden_state
        (out * mask[..., None]).pow(2).mean().backward()
        grads[impl] = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        m.zero_grad(set_to_none=True)
    diff["kexue_vs_kexue-padded_grad_max_abs_diff"] = max(
        (grads["kexue"][n] - g).abs().max().item() for n, g in grads["kexue-padded"].items())
    return diff


def bench_real(data: str, n_batches: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Train step and inference on ``n_batches`` random real-text batches of 32."""
    batches = real_batches(data, n_batches)
    real = sum(int(m.sum()) for _, m in batches)
    padded = sum(m.numel() for _, m in batches)
    models = {impl: build(impl, {}, str(minilm_path())) for impl in REAL_IMPLS}
    result: dict[str, Any] = {
        "batches": n_batches, "batch": 32, "real_tokens": real, "padded_tokens": padded,
        "padded_over_real": padded / real, "agreement": _agreement(models, batches[0]),
    }  # fmt: skip
    for mode in ("train", "infer"):
        steps = {impl: make_step(m, mode, batches) for impl, m in models.items()}
        ms = time_round_robin(steps, warmup, repeats)
        result[f"{mode}_ms_per_batch"] = {k: v / n_batches for k, v in ms.items()}
        del steps
    del models
    spec = {"data": data, "batches": n_batches}
    result["peak_rss_mb"] = {
        mode: {impl: child_peak_rss({**spec, "impl": impl, "mode": mode})["peak_mb"]
               for impl in REAL_IMPLS}
        for mode in ("train", "infer")
    }  # fmt: skip
    return result


def stsb_test_sentences() -> list[str]:
    """The distinct sentences of the STS-B test split, in first-seen order."""
    return list(dict.fromkeys(s for a, b, _ in load_stsb("test") for s in (a, b)))


def encode_step(impl: str, sentences: list[str], batch_size: int):
    """A closure encoding ``sentences`` with kexue's SentenceEncoder or sentence-transformers."""
    if impl == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        peer = SentenceTransformer(str(minilm_path()), device="cpu")
        return lambda: peer.encode(sentences, batch_size=batch_size, show_progress_bar=False)
    ours = SentenceEncoder.from_pretrained(minilm_path(), pooling="mean", normalize=True)
    ours.model.unpad = impl != "kexue-padded"
    return lambda: ours.encode(sentences, batch_size=batch_size, progress=False)


def bench_encode(batch_size: int, warmup: int, repeats: int, limit: int | None) -> dict[str, Any]:
    sentences = stsb_test_sentences()[:limit]
    impls = ("kexue", "kexue-padded", "sentence-transformers")
    steps = {impl: encode_step(impl, sentences, batch_size) for impl in impls}
    vectors = {impl: torch.as_tensor(step()) for impl, step in steps.items()}
    ms = time_round_robin(steps, warmup, repeats)
    del steps
    spec = {"encode": True, "batch": batch_size, "mode": "encode"}
    return {
        "n_sentences": len(sentences), "batch_size": batch_size, "ms": ms,
        "sentences_per_s": {k: 1000 * len(sentences) / v for k, v in ms.items()},
        "speedup_vs_st": ms["sentence-transformers"] / ms["kexue"],
        "max_abs_diff_vs_st": (vectors["kexue"] - vectors["sentence-transformers"]).abs().max().item(),
        "peak_rss_mb": {impl: child_peak_rss({**spec, "impl": impl})["peak_mb"]
                        for impl in impls},
    }  # fmt: skip


def bench_layout(warmup: int, repeats: int) -> dict[str, Any]:
    """How to run attention over packed tokens (MiniLM's 12 heads of 32, an SST-2 batch
    of 32, forward + backward from the packed q/k/v): zero-padded inside attention with a
    key mask (kexue's choice), one SDPA call per sequence, or nested jagged tensors."""
    import torch.nn.functional as F

    _, mask = real_batches("sst2", 1)[0]
    keep = mask.bool()
    b, t = keep.shape
    lengths = keep.sum(1)
    n, h, d = int(lengths.sum()), 12, 32
    idx = keep.flatten().nonzero().squeeze(1)
    offsets = F.pad(lengths.cumsum(0), (1, 0))
    qkv = torch.randn(n, 3 * h * d, requires_grad=True)

    def padded():
        full = qkv.new_zeros(b * t, 3 * h * d).index_copy(0, idx, qkv).view(b, t, 3, h, d)
        q, k, v = full.permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        y.transpose(1, 2).reshape(b * t, h * d)[idx].sum().backward()

    def per_sequence():
        q, k, v = qkv.view(n, 3, h, d).permute(1, 2, 0, 3).unbind(0)  # (h, n, d) each
        ys = [F.scaled_dot_product_attention(q[:, s:e], k[:, s:e], v[:, s:e])
              for s, e in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        torch.cat(ys, dim=1).sum().backward()

    def nested():
        q, k, v = (torch.nested.nested_tensor_from_jagged(x, offsets).transpose(1, 2)
                   for x in qkv.view(n, 3, h, d).unbind(1))
        F.scaled_dot_product_attention(q, k, v).values().sum().backward()

    steps, failed = {"padded": padded, "per_sequence": per_sequence}, {}
    try:
        nested()
        steps["nested_jagged"] = nested
    except RuntimeError as e:  # torch 2.13 on CPU: "No viable backend for scaled_dot_product_attention"
        failed["nested_jagged"] = str(e).splitlines()[0]
    return {"real_tokens": n, "padded_tokens": b * t, "ms": time_round_robin(steps, warmup, repeats),
            "failed": failed}


def bench_compile(data: str, n_batches: int, warmup: int, repeats: int) -> dict[str, Any]:
    """kexue eager vs ``torch.compile(model, dynamic=True)`` on real-text batches: the
    first call's seconds (compilation included) and the steady-state step times."""
    import time

    batches = real_batches(data, n_batches, seed=1)
    result: dict[str, Any] = {"data": data, "batches": n_batches}
    for mode in ("train", "infer"):
        eager = build("kexue", {}, str(minilm_path()))
        compiled = build("kexue", {}, str(minilm_path()))
        torch._dynamo.reset()
        compiled_step = make_step(torch.compile(compiled, dynamic=True), mode, batches)
        t0 = time.perf_counter()
        compiled_step()
        first = time.perf_counter() - t0
        steps = {"eager": make_step(eager, mode, batches), "compiled": compiled_step}
        ms = time_round_robin(steps, warmup, repeats)
        saving = (ms["eager"] - ms["compiled"]) / 1000 / n_batches  # seconds per batch
        result[mode] = {
            "first_call_s": first, "ms_per_batch": {k: v / n_batches for k, v in ms.items()},
            "compiled_speedup": ms["eager"] / ms["compiled"],
            "break_even_batches": first / saving if saving > 0 else None,  # None: never
        }  # fmt: skip
    return result


def main(out_path: str | os.PathLike | None = None, quick: bool = False,
         sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; expected some of {SECTIONS}")
    torch.set_num_threads(2)
    shapes = QUICK_SHAPES if quick else SHAPES
    warmup, repeats = (1, 5) if quick else (2, 7)
    out = Path(out_path) if out_path is not None else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "settings": {"threads": 2, "warmup": warmup, "repeats": repeats, "quick": quick,
                     "sections": list(sections), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "configs": {},
        "ratios": {},
    }  # fmt: skip
    for name, (batch, seq) in shapes.items():
        if f"fixed-{name}" not in sections:
            continue
        print(f"[encoder] {name}: batch {batch} x seq {seq}", flush=True)
        r = bench_config(name, batch, seq, warmup, repeats)
        results["configs"][name] = r
        ratios = {}
        for peer in ("hf-sdpa", "hf-eager"):
            for mode in ("train", "infer"):
                ratios[f"{mode}_speedup_vs_{peer}"] = (
                    r[f"{mode}_ms"][peer] / r[f"{mode}_ms"]["kexue"]
                )
                ratios[f"{mode}_peak_mem_ratio_vs_{peer}"] = (
                    r["peak_rss_mb"][mode]["kexue"] / r["peak_rss_mb"][mode][peer]
                )
        results["ratios"][name] = ratios
    if "recompute" in sections:
        print("[encoder] recompute", flush=True)
        results["recompute"] = bench_recompute("base", *shapes["base"], warmup, repeats)
    results["targets"] = {
        name: {
            "train_speedup_vs_hf_sdpa_ge_0.97": r["train_speedup_vs_hf-sdpa"] >= 0.97,
            "infer_speedup_vs_hf_sdpa_ge_0.97": r["infer_speedup_vs_hf-sdpa"] >= 0.97,
            "train_peak_mem_le_hf_sdpa": r["train_peak_mem_ratio_vs_hf-sdpa"] <= 1.0,
            "infer_peak_mem_le_hf_sdpa": r["infer_peak_mem_ratio_vs_hf-sdpa"] <= 1.0,
        }
        for name, r in results["ratios"].items()
    }
    real_data = available("stsb-en") and available("sst2")
    if not real_data and {"real", "encode", "compile"} & set(sections):
        print("[encoder] STS-B / SST-2 not available (set KEXUE_DATA): real-text sections skipped")
    if real_data and "layout" in sections:
        print("[encoder] attention layout for packed tokens", flush=True)
        results["layout"] = bench_layout(warmup, repeats)
    if real_data and "real" in sections:
        results["adamw_step_ms"] = adamw_step_ms()
        results["real"] = {}
        for data in ("stsb", "sst2"):
            print(f"[encoder] real text: {data}", flush=True)
            r = bench_real(data, 2 if quick else 4, warmup, repeats)
            for mode in ("train", "infer"):
                for peer in ("kexue-padded", "hf-sdpa", "hf-eager"):
                    t = r[f"{mode}_ms_per_batch"]
                    r[f"{mode}_speedup_vs_{peer}"] = t[peer] / t["kexue"]
                r[f"target_{mode}_ge_1.8x_hf_sdpa"] = r[f"{mode}_speedup_vs_hf-sdpa"] >= 1.8
            results["real"][data] = r
            out.write_text(json.dumps(results, indent=2) + "\n")  # partial results so far
    if real_data and "encode" in sections:
        print("[encoder] encode on STS-B test", flush=True)
        r = bench_encode(64, 1, 3 if quick else 5, 300 if quick else None)
        r["target_ge_1.3x_st"] = r["speedup_vs_st"] >= 1.3
        results["encode"] = r
        out.write_text(json.dumps(results, indent=2) + "\n")
    if real_data and "compile" in sections:
        print("[encoder] torch.compile", flush=True)
        results["compile"] = bench_compile("sst2", 2 if quick else 4, warmup, repeats)
    _print_table(results)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"[encoder] wrote {out}")
    return results


def _print_table(results: dict[str, Any]) -> None:
    print(f"\n{'config':8} {'mode':6} " + " ".join(f"{i:>10}" for i in IMPLS)
          + "  speed-up vs sdpa / eager   peak RSS MB (kexue / sdpa / eager)")  # fmt: skip
    for name, r in results["configs"].items():
        q = results["ratios"][name]
        for mode in ("train", "infer"):
            ms = " ".join(f"{r[f'{mode}_ms'][i]:>8.1f}ms" for i in IMPLS)
            mem = " / ".join(f"{r['peak_rss_mb'][mode][i]:.0f}" for i in IMPLS)
            print(f"{name:8} {mode:6} {ms}  {q[f'{mode}_speedup_vs_hf-sdpa']:>6.2f}x / "
                  f"{q[f'{mode}_speedup_vs_hf-eager']:.2f}x        {mem}")  # fmt: skip
    if "recompute" in results:
        rc = results["recompute"]
        print(f"\nrecompute ({rc['layers']} layers, batch {rc['batch']} x seq {rc['seq']}): "
              f"saved activations {rc['saved_ratio']:.3f}x, step time {rc['time_ratio']:.2f}x, "
              f"peak RSS {rc['peak_rss_mb']['on']:.0f} vs {rc['peak_rss_mb']['off']:.0f} MB")  # fmt: skip
    for data, r in results.get("real", {}).items():
        for mode in ("train", "infer"):
            ms = " ".join(f"{r[f'{mode}_ms_per_batch'][i]:>8.1f}ms" for i in REAL_IMPLS)
            mem = " / ".join(f"{r['peak_rss_mb'][mode][i]:.0f}" for i in REAL_IMPLS)
            print(f"{data:6} {mode:6} {ms}  x{r[f'{mode}_speedup_vs_hf-sdpa']:.2f} vs sdpa, "
                  f"x{r[f'{mode}_speedup_vs_hf-eager']:.2f} vs eager, RSS {mem}")  # fmt: skip
    if "encode" in results:
        e = results["encode"]
        print(f"encode: {e['sentences_per_s']}, x{e['speedup_vs_st']:.2f} vs sentence-transformers")
    if "compile" in results:
        for mode in ("train", "infer"):
            c = results["compile"][mode]
            print(f"compile {mode}: first call {c['first_call_s']:.1f} s, "
                  f"x{c['compiled_speedup']:.2f} steady state")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, fewer repeats")
    parser.add_argument("--out", default=None, help=f"JSON path (default {DEFAULT_OUT})")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
    else:
        main(args.out, quick=args.quick, sections=tuple(args.sections.split(",")))
