"""T23 How many dimensions does a word vector need? Skip-gram on PTB around n = 8.33 ln N.

Post: 最小熵原理（六）：词向量的维度应该怎么选择？ (2020-08-20, https://kexue.fm/archives/7695).
The post models word pairs as ``p(w_i, w_j) = exp(<u_i, v_j>) / Z`` (Skip-gram), and argues
from the entropy of that model that once ``n > 8.33 ln N`` the N words can no longer fill
the space, i.e. more dimensions stop paying. It gives no experiment ("consistent with
experience": 64-300 dimensions in practice).

Ours: Skip-gram (window 2, no bias: the post's ``<u_i, v_j>``) on the word-level PTB
(N = 10000 words, bound 8.33 ln N = 76.7), trained at dimensions bound x {1/8, 1/4, 1/2, 1,
2, 4} with a sampled softmax (``S`` negatives drawn from the unigram^0.75 distribution and
shared across the batch, logits corrected by ``-log(S q)``, accidental hits masked), lazy
Adam (only the rows a batch touches), linear decay. Quality = held-out cross-entropy of the *full* softmax ``p(context | centre)``
over all 10000 words on pairs from PTB valid (nats). The bound is an order-of-magnitude
heuristic (the post says so); where the curve bends also depends on the corpus size.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register

FACTORS = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4)  # dimensions, as multiples of the bound
THRESHOLD = 0.25  # the saturation ratio below which the claim counts as reproduced


def build_vocab(sentences: list[list[str]]) -> dict[str, int]:
    """Word -> id by decreasing frequency (ties alphabetical), so id 0 is the most frequent."""
    counts = Counter(w for s in sentences for w in s)
    return {w: i for i, w in enumerate(sorted(counts, key=lambda w: (-counts[w], w)))}


def skipgram_pairs(ids: Tensor, window: int) -> Tensor:
    """All (centre, context) pairs of a token stream within ``window`` positions: (n_pairs, 2).

    ``ids``: (n_tokens,). Each of the ``2 * window`` offsets contributes ``n_tokens - |offset|``
    pairs (the stream is one long text, as in word2vec).
    """
    if ids.dim() != 1:
        raise ValueError(f"expected a 1-d token stream, got shape {tuple(ids.shape)}")
    if window < 1:
        raise ValueError(f"expected window >= 1, got {window}")
    if ids.numel() <= window:
        raise ValueError(f"expected more than window={window} tokens, got {ids.numel()}")
    pairs = []
    for offset in range(1, window + 1):
        pairs.append(torch.stack([ids[:-offset], ids[offset:]], 1))  # context to the right
        pairs.append(torch.stack([ids[offset:], ids[:-offset]], 1))  # context to the left
    return torch.cat(pairs)


class SkipGram(nn.Module):
    """``p(c | w) = softmax_c(<u_w, v_c>)`` over the whole vocabulary (no bias)."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        # sparse gradients: a step touches only the rows of its words (lazy Adam updates them)
        self.u = nn.Embedding(vocab_size, dim, sparse=True)  # centre ("input") vectors
        self.v = nn.Embedding(vocab_size, dim, sparse=True)  # context ("output") vectors
        nn.init.normal_(self.u.weight, std=dim**-0.5)
        nn.init.normal_(self.v.weight, std=dim**-0.5)

    def full_loss(self, centre: Tensor, context: Tensor) -> Tensor:
        """Mean full-softmax cross-entropy of ``context`` given ``centre``: (batch,) ids each."""
        logits = self.u(centre) @ self.v.weight.T  # (batch, vocab)
        return F.cross_entropy(logits, context)

    def sampled_loss(self, centre: Tensor, context: Tensor, negatives: Tensor,
                     log_q: Tensor) -> Tensor:
        """Sampled-softmax estimate of :meth:`full_loss` (Jean et al. 2015).

        ``negatives``: (S,) ids drawn from ``q``; ``log_q``: (vocab,) log of ``S * q``, the
        expected count of each word among the negatives. A negative equal to a row's
        target is masked out of that row.
        """
        u = self.u(centre)  # (batch, dim)
        pos = (u * self.v(context)).sum(-1) - log_q[context]  # (batch,)
        neg = u @ self.v(negatives).T - log_q[negatives]  # (batch, S)
        neg = neg.masked_fill(negatives[None, :] == context[:, None], float("-inf"))
        logits = torch.cat([pos[:, None], neg], 1)  # (batch, 1 + S); the target is column 0
        return F.cross_entropy(logits, torch.zeros_like(context))


@torch.no_grad()
def heldout_loss(model: SkipGram, pairs: Tensor, batch_size: int = 2048) -> float:
    """Full-softmax cross-entropy (nats) averaged over ``pairs`` (n, 2)."""
    total = 0.0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        total += model.full_loss(chunk[:, 0], chunk[:, 1]).item() * len(chunk)
    return total / len(pairs)


def train_skipgram(
    pairs: Tensor,
    vocab_size: int,
    dim: int,
    counts: Tensor,
    *,
    epochs: float,
    batch_size: int,
    num_sampled: int,
    lr: float,
    seed: int,
) -> SkipGram:
    """Train a :class:`SkipGram` with the sampled softmax (lazy Adam on the rows a batch
    touches, ``torch.optim.SparseAdam``; learning rate decayed linearly to 0)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SkipGram(vocab_size, dim)
    q = counts.double() ** 0.75
    q = q / q.sum()
    log_q = torch.log(num_sampled * q).float()  # (vocab,)
    steps = max(1, math.ceil(epochs * len(pairs) / batch_size))
    opt = torch.optim.SparseAdam(list(model.parameters()), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / steps))
    order = torch.randperm(len(pairs), generator=g)
    position = 0
    for _ in range(steps):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(pairs), generator=g), 0
        batch = pairs[order[position : position + batch_size]]
        position += batch_size
        negatives = torch.multinomial(q, num_sampled, replacement=True, generator=g)
        loss = model.sampled_loss(batch[:, 0], batch[:, 1], negatives, log_q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model


def saturation_ratio(losses: dict[float, float]) -> float:
    """``(L(b) - L(4b)) / (L(b/8) - L(b))``: what 4x the bound still buys, relative to what
    the bound bought over b/8 (b = the bound, ``losses`` keyed by the factor of b).

    0 = fully saturated at the bound; 2/3 = a loss falling linearly in log n all the way
    (two doublings above the bound against three below it); negative = worse above it.
    """
    below = losses[1 / 8] - losses[1]
    if not below > 0:
        raise ValueError(f"the loss did not improve from bound/8 to the bound ({losses[1 / 8]:.4f} -> "
                         f"{losses[1]:.4f}); the saturation ratio is undefined")
    return (losses[1] - losses[4]) / below


@register
class WordVectorDimension(Experiment):
    name = "word-vector-dim"
    techniques = ("T23",)
    datasets = ("ptb-lm",)
    minutes: ClassVar[dict[str, float]] = {"quick": 7, "full": 40}
    claim = Claim(
        post="最小熵原理（六）：词向量的维度应该怎么选择？",
        date="2020-08-20",
        url="https://kexue.fm/archives/7695",
        statement="A Skip-gram word vector needs about n > 8.33 ln N dimensions (N = vocabulary "
        "size); beyond that more dimensions no longer help much.",
        condition="Skip-gram on PTB (N = 10000, bound b = 8.33 ln N = 76.7) at n = b x {1/8, 1/4, "
        "1/2, 1, 2, 4}, held-out full-softmax loss L, beyond seed noise: dimensions up to the "
        "bound help (L(b/8) - L(b) > 0) and beyond it they stop helping much: the saturation "
        f"ratio (L(b) - L(4b)) / (L(b/8) - L(b)) is < {THRESHOLD} (a loss linear in log n gives "
        "2/3).",
        reported="No experiment: h_n ~ -0.24 n, so n > 8.33 ln N; N = 100k -> 96, N = 5M -> 128, "
        "'consistent with practical experience'.",
        fidelity="scaled-down",
        post_setting="A derivation, no experiment; the bound is compared with the 64-300 "
        "dimensions used in practice (word2vec on large corpora).",
        our_setting="Skip-gram (window 2, sampled softmax with 256 shared negatives) on word-level "
        "PTB (N = 10000, one epoch of its 3.7M pairs per dimension), held-out loss on 20000 "
        "pairs of PTB valid, 6 dimensions x 3 seeds.",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import load_ptb
        from kexue.embed import POST_COEFFICIENT

        train_sents, valid_sents = load_ptb("train"), load_ptb("valid")
        vocab = build_vocab(train_sents)
        n_tokens = ctx.pick(None, None, smoke=20000)
        train_ids = torch.tensor([vocab[w] for s in train_sents for w in s][:n_tokens])
        valid_ids = torch.tensor([vocab[w] for s in valid_sents for w in s if w in vocab])
        window = 2
        pairs = skipgram_pairs(train_ids, window)
        g = torch.Generator().manual_seed(4321)  # the same held-out pairs for every seed
        heldout = skipgram_pairs(valid_ids, window)
        heldout = heldout[torch.randperm(len(heldout), generator=g)[: ctx.pick(20000, 100000, smoke=2000)]]
        counts = torch.bincount(train_ids, minlength=len(vocab))
        bound = POST_COEFFICIENT * math.log(len(vocab))
        epochs = ctx.pick(1.0, 3.0, smoke=0.05)  # 0.3 epoch: every n stays above the unigram entropy
        num_sampled = ctx.pick(256, 1024, smoke=64)
        batch_size = 4096 if ctx.scale != "smoke" else 512
        losses, dims = {}, {}
        metrics: dict[str, float] = {}
        for f in FACTORS:
            dim = max(2, round(bound * f))
            model = train_skipgram(pairs, len(vocab), dim, counts, epochs=epochs,
                                   batch_size=batch_size, num_sampled=num_sampled, lr=3e-3,
                                   seed=ctx.seed)
            losses[f] = heldout_loss(model, heldout)
            dims[f] = dim
            metrics[f"heldout_loss/n={dim}"] = losses[f]
            ctx.log(f"      n = {dim}: held-out loss {losses[f]:.4f}")
        metrics = {
            "saturation_ratio": saturation_ratio(losses),
            "gain_bound8_to_bound": losses[1 / 8] - losses[1],
            "gain_bound_to_4bound": losses[1] - losses[4],
            "bound": bound,
            **metrics,
        }  # the claim's numbers first: the report's key metrics
        return Run(
            metrics,
            notes=[(f"PTB: N = {len(vocab)} words, {len(train_ids)} training tokens -> {len(pairs)} "
                   f"(centre, context) pairs (window {window}); {epochs:g} epoch(s) of batch "
                   f"{batch_size}, {num_sampled} shared negatives, lazy Adam lr 3e-3 decayed to 0; "
                   f"held-out = {len(heldout)} pairs of PTB valid, full softmax over N. Bound "
                   f"8.33 ln N = {bound:.1f}; dimensions {sorted(dims.values())}. The unigram "
                   f"entropy (a model knowing nothing of the centre word) would score "
                   f"{unigram_entropy(counts):.3f} nats.")],
        )

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.plots import lines

        keys = [k for k in stats if k.startswith("heldout_loss/n=")]
        dims = [int(k.split("=")[1]) for k in keys]
        path = ctx.figure("word_vector_dim.png")
        bound = stats["bound"].mean
        lines({"skip-gram, held-out loss": (dims, [stats[k].mean for k in keys])}, path,
              xlabel="dimension n (log scale)", ylabel="held-out cross-entropy (nats)",
              title=f"PTB skip-gram; dashed: 8.33 ln N = {bound:.1f}", logx=True, vline=bound)
        table = "| n | " + " | ".join(str(d) for d in dims) + " |\n|---|" + "---|" * len(dims)
        table += "\n| held-out loss | " + " | ".join(str(stats[k]) for k in keys) + " |"
        return Run({}, figures=[path.name], tables=[table])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.above("gain_bound8_to_bound", 0.0,
                        description="dimensions up to the bound lower the held-out loss"),
            stats.below("saturation_ratio", THRESHOLD,
                        description="beyond the bound they stop helping much"),
        ]


def unigram_entropy(counts: Tensor) -> float:
    """Entropy (nats) of the unigram distribution of ``counts``: the loss of a context model
    that ignores the centre word."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())
