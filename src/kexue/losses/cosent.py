"""CoSENT and the two baselines it was compared with, in one place.

Source: Su Jianlin, "CoSENT（一）：比Sentence-BERT更有效的句向量方案" (CoSENT (1): a sentence
embedding scheme more effective than Sentence-BERT), 2022-01-06, https://kexue.fm/archives/8847.

For a batch of sentence pairs with similarity scores ``s`` (e.g. ``cos(u_i, v_i)``) and labels
``y`` (binary, ordinal or real-valued), CoSENT asks only that every pair scores higher than
every pair with a lower label:

    L = log(1 + sum_{(i, j): y_i > y_j} exp(scale * (s_j - s_i)))           scale = lambda = 20

one scalar per batch (not averaged). The baselines of the post:

* :class:`SBERTSoftmaxLoss` -- Sentence-BERT: a softmax classifier on ``[u, v, |u - v|]``;
  for STS the author trains it on binarised labels ``score > 2.5`` (his ``sbert.py``).
* :func:`cosine_mse_loss` -- regress ``cos(u, v)`` on the score (STS: ``score / 5``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CoSENTLoss",
    "SBERTSoftmaxLoss",
    "cosent_loss",
    "cosent_loss_from_embeddings",
    "cosent_loss_pairwise",
    "cosine_mse_loss",
    "pair_cosine",
]


# ----------------------------------------------------------------------------- validation


def _check_pairs(scores: Tensor, labels: Tensor, *, name: str = "scores") -> tuple[Tensor, Tensor]:
    """Flatten ``labels`` to ``(batch,)`` and check both against ``scores`` of shape (batch,)."""
    labels = _check_pair_shapes(scores, labels, name=name)
    if not _finite_pairs(scores, labels):
        _raise_non_finite(scores, labels, name)
    return scores, labels


def _check_pair_shapes(scores: Tensor, labels: Tensor, *, name: str = "scores") -> Tensor:
    """The shape and dtype checks of :func:`_check_pairs` (no data read); flat ``labels``."""
    if scores.dim() != 1:
        raise ValueError(f"expected {name} of shape (batch,), got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise ValueError(f"expected floating-point {name}, got dtype {scores.dtype}")
    batch = scores.shape[0]
    if labels.dim() > 1 and labels.squeeze().dim() > 1:
        raise ValueError(f"expected labels of shape (batch,) like {name}, got shape "
                         f"{tuple(labels.shape)}")
    if labels.numel() != batch:
        raise ValueError(
            f"expected one label per pair: {name} has {batch} entries but labels has "
            f"{labels.numel()} (shape {tuple(labels.shape)})"
        )
    if batch < 2:
        raise ValueError(f"expected a batch of at least 2 pairs to rank, got {batch}")
    return labels.reshape(-1)


def _finite_pairs(scores: Tensor, labels: Tensor) -> bool:
    """No NaN or inf in ``scores`` and no NaN in ``labels``, read with one synchronisation
    (at B = 64 the whole loss costs well under a millisecond, so each read counts)."""
    ok = torch.isfinite(scores).all()
    if labels.is_floating_point():
        ok = ok & ~torch.isnan(labels).any()
    return bool(ok)


def _raise_non_finite(scores: Tensor, labels: Tensor, name: str) -> None:
    if not torch.isfinite(scores).all():
        raise ValueError(f"{name} contain NaN or inf ({int((~torch.isfinite(scores)).sum())} entries)")
    raise ValueError(f"labels contain NaN ({int(torch.isnan(labels).sum())} entries)")


def _check_scale(scale: float) -> None:
    """``lambda`` must be a finite number > 0: a negative one inverts the ranking."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
            or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")


def _check_embeddings(u: Tensor, v: Tensor) -> None:
    if u.dim() != 2 or u.shape != v.shape:
        raise ValueError(
            f"expected u and v of the same shape (batch, dim), got {tuple(u.shape)} and {tuple(v.shape)}"
        )
    for name, x in (("u", u), ("v", v)):
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf ({int((~torch.isfinite(x)).sum())} entries)")


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs, the input dtype otherwise (float64 stays float64)."""
    return torch.promote_types(x.dtype, torch.float32)


def pair_cosine(u: Tensor, v: Tensor, eps: float = 1e-8) -> Tensor:
    """Row-wise cosine ``cos(u_i, v_i) = <u_i, v_i> / max(|u_i| |v_i|, eps)``, at least in fp32.

    ``u``, ``v``: (batch, dim) -> (batch,).
    """
    dtype = _compute_dtype(u)
    u, v = u.to(dtype), v.to(dtype)
    dot = (u * v).sum(dim=-1)  # (batch,)
    norms = torch.linalg.vector_norm(u, dim=-1) * torch.linalg.vector_norm(v, dim=-1)
    return dot / norms.clamp_min(eps)


# ----------------------------------------------------------------------------- CoSENT


def cosent_loss(scores: Tensor, labels: Tensor, scale: float = 20.0) -> Tensor:
    r"""CoSENT loss of a batch of scored sentence pairs (kexue.fm/archives/8847, 2022-01-06).

    .. math::
        L = \log\Big(1 + \sum_{i, j:\ y_i > y_j} e^{\lambda (s_j - s_i)}\Big)

    Args:
        scores: (batch,) similarity of each pair, usually ``cos(u_i, v_i)`` in [-1, 1].
        labels: (batch,) gold similarity (bool, integer or float); only their order matters,
            ties contribute nothing.
        scale: ``lambda``, the inverse temperature (the author's 20, i.e. temperature 0.05).

    Returns:
        A scalar tensor, computed in float32 for float16/bfloat16 scores (float64 stays
        float64). A batch whose labels are all equal has no ordered pair and gives 0.

    The sum has O(B^2) terms but is evaluated in O(B log B): sort the pairs by label,
    descending; the pairs ranked above pair ``j`` are then a prefix, so
    ``log sum_{i: y_i > y_j} e^{-s_i}`` is a running ``logcumsumexp`` read at the start of
    ``j``'s tie group. :func:`cosent_loss_pairwise` is the literal all-pairs form and the
    two agree to rounding (tested).
    """
    scores, labels = _check_pairs(scores, labels)
    _check_scale(scale)
    return _cosent(scores, labels, scale)


def _cosent(scores: Tensor, labels: Tensor, scale: float) -> Tensor:
    """:func:`cosent_loss` of checked inputs."""
    s = scores.to(_compute_dtype(scores)) * scale  # (batch,)
    if not labels.is_floating_point():
        labels = labels.to(torch.int64)  # bool / unsigned labels cannot be negated
    key, order = torch.sort(-labels)  # labels descending == key ascending
    s = s[order]
    # n_above[j] = #{i : y_i > y_j} = #{i : key_i < key_j} = left insertion point of key_j
    n_above = torch.searchsorted(key, key)  # (batch,)
    # prefix[n] = log sum_{i < n} exp(-s_i) over the sorted order; prefix[0] = log 0 = -inf
    prefix = F.pad(torch.logcumsumexp(-s, dim=0), (1, 0), value=float("-inf"))  # (batch + 1,)
    terms = s + prefix[n_above]  # log sum_{i: y_i > y_j} exp(s_j - s_i), -inf if none
    return torch.logsumexp(F.pad(terms, (1, 0)), dim=0)  # the leading 0 is the "1 +"


def cosent_loss_pairwise(scores: Tensor, labels: Tensor, scale: float = 20.0) -> Tensor:
    """Reference form of :func:`cosent_loss`: the (batch, batch) matrix of all ordered pairs.

    ``M[j, i] = scale * (s_j - s_i)``, kept where ``y_j < y_i`` and set to ``-inf`` elsewhere
    (not ``-1e12``, which overflows in half precision), then ``logsumexp([0, vec(M)])``, as in
    the post. Same arguments and result as :func:`cosent_loss`; O(B^2) memory.
    """
    scores, labels = _check_pairs(scores, labels)
    _check_scale(scale)
    s = scores.to(_compute_dtype(scores)) * scale  # (batch,)
    diff = s[:, None] - s[None, :]  # (batch, batch): s_j - s_i at [j, i]
    ranked_below = labels[:, None] < labels[None, :]  # y_j < y_i
    diff = diff.masked_fill(~ranked_below, float("-inf"))
    return torch.logsumexp(F.pad(diff.flatten(), (1, 0)), dim=0)


def cosent_loss_from_embeddings(
    u: Tensor, v: Tensor, labels: Tensor, scale: float = 20.0, eps: float = 1e-8
) -> Tensor:
    """CoSENT on the cosine of two batches of sentence embeddings ``u``, ``v``: (batch, dim)."""
    if u.dim() != 2 or u.shape != v.shape:
        raise ValueError(
            f"expected u and v of the same shape (batch, dim), got {tuple(u.shape)} and {tuple(v.shape)}"
        )
    _check_scale(scale)
    scores = pair_cosine(u, v, eps=eps)  # (batch,)
    labels = _check_pair_shapes(scores, labels)
    # A NaN or inf anywhere in row i makes cos_i NaN, so checking the (batch,) cosines is
    # enough, and much cheaper than scanning both (batch, dim) inputs.
    if not _finite_pairs(scores, labels):
        bad = ~torch.isfinite(scores)
        if bad.any():
            rows = bad.nonzero().flatten().tolist()
            raise ValueError(f"u or v contain NaN or inf in {len(rows)} pair(s): rows {rows[:10]}")
        _raise_non_finite(scores, labels, "scores")
    return _cosent(scores, labels, scale)


class CoSENTLoss(nn.Module):
    """Module form of :func:`cosent_loss_from_embeddings`: ``CoSENTLoss(scale=20)(u, v, labels)``."""

    def __init__(self, scale: float = 20.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.scale = scale
        self.eps = eps

    def forward(self, u: Tensor, v: Tensor, labels: Tensor) -> Tensor:
        return cosent_loss_from_embeddings(u, v, labels, scale=self.scale, eps=self.eps)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


# ----------------------------------------------------------------------------- baselines


class SBERTSoftmaxLoss(nn.Module):
    """Sentence-BERT baseline: cross-entropy of a linear softmax classifier on ``[u, v, |u - v|]``.

    ``logits = W [u; v; |u - v|] + b`` with ``W``: (num_labels, 3 dim). Reimers & Gurevych,
    "Sentence-BERT" (2019), as trained by the author's ``sbert.py`` for the CoSENT comparison
    (kexue.fm/archives/8847): on STS the float scores are binarised, ``label = score > threshold``
    with ``threshold = 2.5``, and at test time only ``cos(u, v)`` is used (the classifier is
    thrown away).

    Args:
        embedding_dim: size of ``u`` and ``v``.
        num_labels: classes of the softmax (2 for binarised STS, 3 for NLI).
        threshold: if not None, float labels are binarised as ``labels > threshold``
            (requires ``num_labels == 2``); if None, labels must be class indices.
    """

    def __init__(self, embedding_dim: int, num_labels: int = 2, threshold: float | None = 2.5) -> None:
        super().__init__()
        if threshold is not None and num_labels != 2:
            raise ValueError(f"threshold binarises labels, so num_labels must be 2, got {num_labels}")
        self.threshold = threshold
        self.classifier = nn.Linear(3 * embedding_dim, num_labels)

    def logits(self, u: Tensor, v: Tensor) -> Tensor:
        """(batch, dim), (batch, dim) -> (batch, num_labels)."""
        features = torch.cat([u, v, (u - v).abs()], dim=-1)  # (batch, 3 dim)
        return self.classifier(features.to(self.classifier.weight.dtype))

    def forward(self, u: Tensor, v: Tensor, labels: Tensor) -> Tensor:
        _check_embeddings(u, v)
        if labels.numel() != u.shape[0]:
            raise ValueError(f"expected {u.shape[0]} labels (one per pair), got {labels.numel()}")
        labels = labels.reshape(-1)
        if self.threshold is not None:
            targets = (labels > self.threshold).long()
        elif labels.is_floating_point():
            raise ValueError("expected integer class labels when threshold=None, got float labels")
        else:
            targets = labels.long()
        return F.cross_entropy(self.logits(u, v).float(), targets)


def cosine_mse_loss(u: Tensor, v: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cosine-MSE baseline: ``(cos(u_i, v_i) - y_i)^2``, reduced like ``F.mse_loss``.

    ``labels`` must already be on the cosine's scale (STS-B: ``score / 5``), which is what
    sentence-transformers' ``CosineSimilarityLoss`` computes too.
    """
    _check_embeddings(u, v)
    cos = pair_cosine(u, v)
    if labels.numel() != cos.shape[0]:
        raise ValueError(f"expected {cos.shape[0]} labels (one per pair), got {labels.numel()}")
    return F.mse_loss(cos, labels.reshape(-1).to(cos.dtype), reduction=reduction)
