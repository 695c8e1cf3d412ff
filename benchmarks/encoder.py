"""Encoder speed and memory: ``kexue.models.Bert`` vs ``transformers.BertModel``.

Measured in one run, on 2 threads, with identical weights:

- training step (forward + backward + AdamW, dropout on) and inference (eval,
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

Headline numbers are ratios (speed-up = transformers time / kexue time).
Run ``python benchmarks/encoder.py [--quick] [--out PATH]``.
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
DEFAULT_OUT = Path(__file__).parent / "results" / "encoder.json"


def build(impl: str, config: dict[str, int], folder: str | None = None, recompute: bool = False):
    """The model ``impl`` for ``config``; from ``folder`` (shared weights) when given."""
    if impl == "kexue":
        if folder is not None:
            return Bert.from_pretrained(folder, recompute=recompute)
        torch.manual_seed(0)
        return Bert(BertConfig(**config), recompute=recompute)
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


def make_step(model, mode: str, ids: torch.Tensor, mask: torch.Tensor):
    """A closure running one training step or one inference forward."""
    if mode == "infer":
        model.eval()

        def infer():
            with torch.inference_mode():
                model(ids, attention_mask=mask)

        return infer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train():
        out = model(ids, attention_mask=mask).last_hidden_state
        out.pow(2).mean().backward()
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


def main(out_path: str | os.PathLike | None = None, quick: bool = False) -> dict[str, Any]:
    torch.set_num_threads(2)
    shapes = QUICK_SHAPES if quick else SHAPES
    warmup, repeats = (1, 5) if quick else (2, 7)
    results: dict[str, Any] = {
        "settings": {"threads": 2, "warmup": warmup, "repeats": repeats, "quick": quick,
                     "torch": torch.__version__, "transformers": transformers.__version__},
        "configs": {},
        "ratios": {},
    }  # fmt: skip
    for name, (batch, seq) in shapes.items():
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
    print("[encoder] recompute", flush=True)
    results["recompute"] = bench_recompute("base", *shapes["base"], warmup, repeats)
    results["targets"] = {
        name: {
            "train_speedup_vs_hf_sdpa_ge_1.3": r["train_speedup_vs_hf-sdpa"] >= 1.3,
            "infer_speedup_vs_hf_sdpa_ge_1.2": r["infer_speedup_vs_hf-sdpa"] >= 1.2,
            "train_peak_mem_le_hf_sdpa": r["train_peak_mem_ratio_vs_hf-sdpa"] <= 1.0,
            "infer_peak_mem_le_hf_sdpa": r["infer_peak_mem_ratio_vs_hf-sdpa"] <= 1.0,
        }
        for name, r in results["ratios"].items()
    }
    _print_table(results)
    out = Path(out_path) if out_path is not None else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
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
    rc = results["recompute"]
    print(f"\nrecompute ({rc['layers']} layers, batch {rc['batch']} x seq {rc['seq']}): "
          f"saved activations {rc['saved_ratio']:.3f}x, step time {rc['time_ratio']:.2f}x, "
          f"peak RSS {rc['peak_rss_mb']['on']:.0f} vs {rc['peak_rss_mb']['off']:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, fewer repeats")
    parser.add_argument("--out", default=None, help=f"JSON path (default {DEFAULT_OUT})")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
    else:
        main(args.out, quick=args.quick)
