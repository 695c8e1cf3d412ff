"""Trie-constrained decoding: kexue's tensor trie vs ``transformers``' ``prefix_allowed_tokens_fn``.

Seq2Seq+前缀树 (2021-12-17, https://kexue.fm/archives/8802). The same random GPT-2
(``transformers.GPT2LMHeadModel`` and ``kexue.models.GPT2`` loaded from its folder) decodes
32 new tokens for a batch of 8 prompts, greedy and with 4 beams, unconstrained and
constrained to a set of 10,000 random 32-token entries:

- kexue: ``generate(CausalLM(model), ..., constraint=Trie(entries))`` — the allowed tokens
  of the whole batch are one scatter into a ``(rows, vocab)`` mask, the move down the tree
  one ``searchsorted``;
- transformers: ``model.generate(..., prefix_allowed_tokens_fn=fn)`` with ``fn`` walking a
  nested-dict trie from the root for each row at each step (the GENRE / bert4keras way).

Reported: median seconds per call, the ratios constrained / unconstrained for each
library and transformers / kexue for the constrained calls (all timed in turns in one
process), whether the outputs agree, and the trie's memory (tensor bytes vs the dict
trie's allocations, per million entries). Beam search renormalises the masked
log-probabilities in kexue (as the post does) and not in transformers, so only the greedy
outputs must agree exactly. 2 threads.
Run: ``python benchmarks/generation.py [--quick]`` (writes ``benchmarks/results/generation.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch
import transformers
from _timing import alternate, medians, ratio

from kexue.generate import CausalLM, Trie, generate
from kexue.models import GPT2

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "generation.json"
VOCAB, EOS, PAD = 2000, 1, 0
BATCH, PROMPT, NEW = 8, 8, 32


def models(hidden: int, layers: int) -> tuple[transformers.GPT2LMHeadModel, GPT2]:
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=hidden, n_layer=layers,
                                  n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  bos_token_id=None, eos_token_id=None, pad_token_id=PAD,
                                  initializer_range=0.1)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = GPT2.from_pretrained(folder).eval()
    return hf, ours


def entries(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random entries of ``NEW`` tokens (ids 2..VOCAB-1: no eos, no padding)."""
    return torch.randint(2, VOCAB, (n, NEW), generator=torch.Generator().manual_seed(seed))


def dict_trie(rows: torch.Tensor) -> dict:
    root: dict = {}
    for row in rows.tolist():
        node = root
        for t in row:
            node = node.setdefault(t, {})
    return root


def prefix_fn(root: dict, prompt_len: int):
    """``prefix_allowed_tokens_fn``: walk the dict trie along the generated tokens."""
    def allowed(batch_id: int, ids: torch.Tensor) -> list[int]:
        node = root
        for t in ids[prompt_len:].tolist():
            node = node.get(t)
            if node is None:
                return [EOS]
        return list(node) or [EOS]
    return allowed


def contenders(lm, hf, prompt, trie, fn, hf_kw, extra) -> dict:
    """The four calls timed against each other, decoding the same prompts."""
    return {  # every call knows the end token; the constraint is the only difference
        "kexue": lambda: generate(lm, prompt, NEW, eos_token_id=EOS, **extra),
        "kexue_trie": lambda: generate(lm, prompt, NEW, eos_token_id=EOS, constraint=trie, **extra),
        "hf": lambda: hf.generate(prompt, **hf_kw, eos_token_id=EOS, **extra),
        "hf_prefix_fn": lambda: hf.generate(prompt, **hf_kw, eos_token_id=EOS,
                                            prefix_allowed_tokens_fn=fn, **extra),
    }


def trie_memory(n: int) -> dict[str, float]:
    """Bytes per million entries: the tensor trie vs the dict trie (tracemalloc), and build s."""
    rows = entries(n, seed=1)
    t0 = time.perf_counter()
    trie = Trie(rows, VOCAB, EOS)
    build = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    root = dict_trie(rows)
    dict_build = time.perf_counter() - t0
    dict_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del root
    scale = 1e6 / n
    return {"entries": n, "nodes": trie.num_nodes,
            "kexue_mb_per_million": trie.nbytes * scale / 2**20,
            "dict_mb_per_million": dict_bytes * scale / 2**20,
            "kexue_build_s": build, "dict_build_s": dict_build}


def main(out_path: str | Path | None = None, quick: bool = False) -> dict:
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    hidden, layers = 256, 4
    hf, ours = models(hidden, layers)
    n_entries = 10_000
    rows = entries(n_entries)
    trie = Trie(rows, VOCAB, EOS)
    root = dict_trie(rows)
    prompt = torch.randint(2, VOCAB, (BATCH, PROMPT), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(prompt)
    lm = CausalLM(ours)
    hf_kw = {"attention_mask": mask, "max_new_tokens": NEW, "do_sample": False, "pad_token_id": PAD}
    fn = prefix_fn(root, PROMPT)
    results: dict = {"config": {"vocab": VOCAB, "hidden": hidden, "layers": layers, "batch": BATCH,
                                "prompt": PROMPT, "new_tokens": NEW, "entries": n_entries,
                                "threads": 2, "torch": torch.__version__,
                                "transformers": transformers.__version__}}
    with torch.no_grad():
        diff = (ours(prompt).logits - hf(prompt).logits).abs().max().item()
    results["logits_max_abs_diff"] = diff
    repeats = 3 if quick else 7
    for beams in (1, 4):
        fns = contenders(lm, hf, prompt, trie, fn, hf_kw, {"num_beams": beams} if beams > 1 else {})
        outs = {k: f() for k, f in fns.items()}
        hf_new = {k: outs[k][:, PROMPT:] for k in ("hf", "hf_prefix_fn")}
        times = alternate(fns, repeats, 1, warmup=1)
        key = "greedy" if beams == 1 else f"beam{beams}"
        results[key] = {
            "median_s": medians(times),
            "kexue_constrained_over_unconstrained": ratio(times, "kexue_trie", "kexue"),
            "hf_constrained_over_unconstrained": ratio(times, "hf_prefix_fn", "hf"),
            "hf_constrained_over_kexue_constrained": ratio(times, "hf_prefix_fn", "kexue_trie"),
            "hf_unconstrained_over_kexue_unconstrained": ratio(times, "hf", "kexue"),
            "unconstrained_rows_equal": float((outs["kexue"] == hf_new["hf"]).all(1).float().mean()),
            "constrained_rows_equal": float((outs["kexue_trie"][:, :NEW] == hf_new["hf_prefix_fn"][:, :NEW])
                                            .all(1).float().mean()),
            "constrained_rows_in_trie": float(trie.contains(outs["kexue_trie"][:, :NEW]).float().mean()),
            "hf_constrained_rows_in_trie": float(trie.contains(hf_new["hf_prefix_fn"][:, :NEW]).float().mean()),
        }
        print(key, json.dumps({k: v for k, v in results[key].items() if k != "median_s"}), flush=True)
    results["memory"] = [trie_memory(n) for n in ((10_000,) if quick else (10_000, 100_000))]
    results["kexue_mb_per_million_entries"] = statistics.mean(
        m["kexue_mb_per_million"] for m in results["memory"])
    out = Path(out_path) if out_path else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    print(json.dumps(main(args.out, args.quick), indent=1))
