"""Scores of generated text against references: corpus BLEU and ROUGE-L over token sequences.

Both work on any sequences of hashable tokens — for Chinese, strings (one token per
character) — so character-level scores need no tokenizer.

- :func:`corpus_bleu`: Papineni et al.'s BLEU as ``sacrebleu.corpus_bleu`` computes it
  (clipped n-gram counts summed over the corpus, brevity penalty
  ``exp(1 - ref_len / sys_len)``, geometric mean of the 1..4-gram precisions, the "exp"
  smoothing of a zero count), in percent.
- :func:`rouge_l`: ``F = 2·LCS / (|hyp| + |ref|)`` per pair (ROUGE-L with β = 1, which is
  also the "F1" of the KgCLUE baseline in Seq2Seq+前缀树, https://kexue.fm/archives/8802),
  in percent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import torch

from kexue.generate.trie import lcs_length


def _ngrams(tokens: Sequence[Hashable], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check_pairs(hypotheses: Sequence, references: Sequence) -> None:
    if len(hypotheses) != len(references) or len(hypotheses) == 0:
        raise ValueError(f"need as many hypotheses as references (and at least one), got "
                         f"{len(hypotheses)} and {len(references)}")


def corpus_bleu(hypotheses: Sequence[Sequence[Hashable]], references: Sequence[Sequence[Hashable]],
                max_order: int = 4) -> float:
    """Corpus BLEU (percent) of ``hypotheses`` against one reference each."""
    _check_pairs(hypotheses, references)
    correct, total = [0] * max_order, [0] * max_order
    sys_len = sum(len(h) for h in hypotheses)
    ref_len = sum(len(r) for r in references)
    for hyp, ref in zip(hypotheses, references):
        for n in range(1, max_order + 1):
            h, r = _ngrams(hyp, n), _ngrams(ref, n)
            correct[n - 1] += sum(min(c, r[g]) for g, c in h.items())
            total[n - 1] += max(len(hyp) - n + 1, 0)
    if not any(correct):
        return 0.0
    logs, halving = [], 1.0
    for c, t in zip(correct, total):
        if t == 0:
            return 0.0
        if c == 0:
            halving *= 2
            logs.append(math.log(100.0 / (halving * t)))
        else:
            logs.append(math.log(100.0 * c / t))
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len else 0.0)
    return bp * math.exp(sum(logs) / max_order)


def rouge_l(hypotheses: Sequence[Sequence[Hashable]], references: Sequence[Sequence[Hashable]]) -> list[float]:
    """ROUGE-L F (β = 1) of each pair, percent: ``200 · LCS / (|hyp| + |ref|)`` (0 if both empty)."""
    _check_pairs(hypotheses, references)
    vocab: dict[Hashable, int] = {}

    def ids(seqs, pad):
        width = max(1, max(len(s) for s in seqs))
        out = torch.full((len(seqs), width), pad, dtype=torch.long)
        for i, s in enumerate(seqs):
            if len(s):
                out[i, : len(s)] = torch.tensor([vocab.setdefault(t, len(vocab)) for t in s])
        return out

    lcs = lcs_length(ids(hypotheses, -1), ids(references, -2)).double()
    lengths = torch.tensor([len(h) + len(r) for h, r in zip(hypotheses, references)], dtype=torch.float64)
    return (200.0 * lcs / lengths.clamp(min=1)).tolist()
