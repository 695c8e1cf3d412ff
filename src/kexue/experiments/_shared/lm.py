"""Train a small RoPE language model once, evaluate it under many inference-time options.

Shared by the length-extrapolation (T14), entropy-scale (T32) and key-size (T6)
experiments: a character corpus split into train/validation ids, the model
(:class:`kexue.models.GPT2` with ``position_embedding_type="rope"``, built from an
:class:`LMConfig` by :func:`build_lm`), training through :func:`kexue.train.fit` with the
weights cached in ``ctx.cache_dir`` (keyed by config, data shape, steps, seed and the
hashes of the code that trained them),
and an evaluation of many ``(RoPE variant, attention mask)`` options at many lengths on
the same target tokens (post 9708's protocol: a window of length ``L`` ends at a fixed
position and only its last ``L_train`` tokens are scored, so a longer context can only
help if the model uses it).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kexue.models import GPT2, GPT2Config
from kexue.nn import RoPE

CORPORA = ("tinyshakespeare", "tang")
DATASET_OF = {"tinyshakespeare": "tinyshakespeare", "tang": "chinese-poetry-tang"}


@dataclass
class Corpus:
    """Character ids of one corpus: ``train`` and ``val`` 1-D tensors, id 0 = unknown."""

    name: str
    train: Tensor
    val: Tensor
    vocab: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 2  # 0 = unknown, last = [MASK]

    @property
    def mask_id(self) -> int:
        return len(self.vocab) + 1


def encode_chars(text: str, vocab: list[str]) -> Tensor:
    """Ids ``1..len(vocab)`` for known characters, 0 for the others."""
    index = {c: i + 1 for i, c in enumerate(vocab)}
    return torch.tensor([index.get(c, 0) for c in text], dtype=torch.long)


def load_corpus(name: str, max_chars: int | None = None, min_count: int = 3,
                max_vocab: int | None = None, val_fraction: float = 0.1) -> Corpus:
    """``tinyshakespeare`` or ``tang`` (poems joined by blank lines) as character ids.

    The last ``val_fraction`` of the text is the validation split; characters seen
    fewer than ``min_count`` times in the training split, or beyond the ``max_vocab``
    most frequent, map to 0.
    """
    from kexue import data

    if name == "tinyshakespeare":
        text = data.load_tinyshakespeare()
    elif name == "tang":
        text = "\n\n".join(data.load_tang_poems())
    else:
        raise ValueError(f"unknown corpus {name!r}; expected one of {CORPORA}")
    if max_chars is not None:
        text = text[:max_chars]
    cut = int(len(text) * (1 - val_fraction))
    counts = Counter(text[:cut])
    vocab = sorted(c for c, n in counts.most_common(max_vocab) if n >= min_count)
    return Corpus(name, encode_chars(text[:cut], vocab), encode_chars(text[cut:], vocab), vocab)


@dataclass
class LMConfig:
    vocab_size: int
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    key_size: int | None = None  # default hidden / heads
    head_size: int | None = None
    talking_heads: bool = False
    scale: str = "sqrt"  # "sqrt" or "entropy"
    intermediate: int | None = None  # feed-forward size, default 4 * hidden


def build_lm(config: LMConfig, seed: int) -> GPT2:
    """A pre-LN RoPE Transformer with a tied output head: :class:`kexue.models.GPT2` with
    rotary positions, exact GELU and no dropout.

    Initialised as the experiments always were: PyTorch's default for the linear layers
    (uniform in ``±1/√fan_in``) and ``N(0, 0.02)`` for the token embeddings (GPT-2's own
    init draws ``N(0, 0.02)`` everywhere). The draws are made in the order of the model
    the experiments used before GPT2 had RoPE, so a seed gives the same weights and the
    reported numbers stay reproducible.
    """
    c = config
    model = GPT2(GPT2Config(
        vocab_size=c.vocab_size, hidden_size=c.hidden, num_hidden_layers=c.layers,
        num_attention_heads=c.heads, intermediate_size=c.intermediate, hidden_act="gelu",
        hidden_dropout_prob=0.0, embedding_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        position_embedding_type="rope", bos_token_id=None, eos_token_id=None,
        attention={"key_size": c.key_size, "head_size": c.head_size,
                   "talking_heads": c.talking_heads, "scale": c.scale}))
    torch.manual_seed(seed)
    model.wte.reset_parameters()  # a N(0, 1) draw, replaced below
    for module in model.blocks.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    nn.init.normal_(model.wte.weight, std=0.02)
    return model


def training_windows(ids: Tensor, length: int, stride: int | None = None) -> Tensor:
    """Rows ``ids[s : s + length + 1]`` every ``stride`` (default ``length // 2``)."""
    stride = stride or max(1, length // 2)
    if len(ids) < length + 1:
        raise ValueError(f"need at least {length + 1} ids for windows of {length}, got {len(ids)}")
    starts = torch.arange(0, len(ids) - length, stride)
    return ids[starts[:, None] + torch.arange(length + 1)]  # (n, length + 1)


def lm_loss(model: GPT2, batch) -> Tensor:
    x = batch[0]
    return F.cross_entropy(model(x[:, :-1]).logits.flatten(0, 1), x[:, 1:].flatten())


def train_cached(config: LMConfig, windows: Tensor, *, steps: int, seed: int, cache_dir: Path,
                 tag: str, loss_fn: Callable = lm_loss, batch_size: int = 32,
                 lr: float = 2e-3, log: Callable[[str], None] = print) -> GPT2:
    """Train :func:`build_lm`'s model on ``windows``, or load the weights that unchanged
    code trained with the same settings (:func:`kexue.evidence.cache.cached_state`)."""
    from kexue.evidence.cache import cached_state
    from kexue.train import TrainConfig, fit

    key = {"model": "GPT2-rope", "tag": tag, "config": asdict(config), "steps": steps,
           "seed": seed, "batch": batch_size, "lr": lr, "windows": list(windows.shape),
           "loss": f"{loss_fn.__module__}.{loss_fn.__qualname__}"}
    model = build_lm(config, seed)

    def build() -> dict[str, Tensor]:
        fit(model, loss_fn, TensorDataset(windows), TrainConfig(
            steps=steps, batch_size=batch_size, lr=lr, warmup=0.05, seed=seed, progress=False,
            log_every=max(1, steps // 5)))
        return model.state_dict()

    model.load_state_dict(cached_state(cache_dir, f"lm-{tag}-s{seed}", key, build, log))
    return model.eval()


def eval_ends(val: Tensor, max_length: int, count: int) -> list[int]:
    """``count`` evenly spaced end positions with at least ``max_length`` ids before them."""
    if len(val) <= max_length + 1:
        raise ValueError(f"validation text of {len(val)} ids is too short for length {max_length}")
    return torch.linspace(max_length, len(val) - 2, count).long().tolist()


def window_rows(val: Tensor, ends: Tensor, length: int, period: int | None = None) -> Tensor:
    """Rows of ``length + 1`` ids ending at each of ``ends`` (inclusive): ``val[e - length :
    e + 1]``, or with ``period`` the last ``period`` ids up to ``e`` repeated to fill the row
    (post 9708's "repeated" samples: the scored text already occurred ``period`` tokens
    earlier, so a model that reads that far back can copy it). ``(len(ends), length + 1)``."""
    span = length + 1 if period is None else period
    if period is not None and period <= 0:
        raise ValueError(f"period must be a positive int, got {period}")
    offsets = torch.arange(-length, 1)  # (length + 1,)
    offsets = offsets if period is None else -((-offsets) % span)  # 0 stays at e
    return val[ends[:, None] + offsets]


@torch.no_grad()
def tail_loss(model: GPT2, val: Tensor, ends: list[int], length: int, last: int, *,
              rope: RoPE | None = None, attention_mask: Tensor | None = None,
              batch_size: int = 8, period: int | None = None) -> float:
    """Mean next-token loss (nats) over the last ``last`` targets of windows of
    ``length`` inputs ending at each of ``ends`` (target ``val[e]`` for input up to ``e-1``),
    with ``rope`` instead of the model's own and a boolean ``(length, length)`` mask;
    ``period``: the windows repeat their last ``period`` ids (:func:`window_rows`)."""
    if last > length:
        raise ValueError(f"last ({last}) must be <= length ({length})")
    mask = None if attention_mask is None else attention_mask[None]  # (1, length, length)
    total, count = 0.0, 0
    for i in range(0, len(ends), batch_size):
        rows = window_rows(val, torch.tensor(ends[i:i + batch_size]), length, period)
        logits = model(rows[:, :-1], rope=rope, attention_mask=mask).logits[:, -last:]
        loss = F.cross_entropy(logits.flatten(0, 1), rows[:, -last:].flatten(), reduction="sum")
        total, count = total + float(loss), count + rows.shape[0] * last
    return total / count


@dataclass
class Variant:
    """An inference-time option: a RoPE for a length and an optional mask for a length."""

    name: str
    rope: Callable[[int], RoPE]
    mask: Callable[[int], Tensor | None] = lambda n: None


def evaluate_variants(model: GPT2, val: Tensor, variants: list[Variant], lengths: list[int],
                      last: int, count: int, period: int | None = None) -> dict[str, dict[int, float]]:
    """``{variant: {length: tail loss}}`` on the same targets for every length (``period``:
    on repeated windows, :func:`window_rows`)."""
    ends = eval_ends(val, max(lengths), count)
    return {v.name: {n: tail_loss(model, val, ends, n, last, rope=v.rope(n),
                                  attention_mask=v.mask(n), period=period) for n in lengths}
            for v in variants}


def bits(nats: float) -> float:
    return nats / math.log(2)
