"""A small training loop: AdamW, warm-up + linear decay, clipping, metrics, checkpoints, DDP.

Read it top to bottom like nanoGPT's ``train.py``, but as a function::

    result = fit(model, loss_fn, train_data, TrainConfig(steps=1000, batch_size=32))
    result = fit(model, loss_fn, train_data, TrainConfig(epochs=3, batch_size=32,
                                                         eval_every="epoch"), eval_fn=...)

- ``loss_fn(model, batch) -> scalar tensor``; how its gradients are computed is a
  *step* (:mod:`kexue.train.step`), so FGM, VAT or a gradient penalty plug in as
  ``fit(..., step=FGM(...))`` without this file changing.
- Batches come from a ``DataLoader`` (``num_workers=0``) whose order is a pure
  function of ``(seed, epoch)``: the permutation of epoch ``e`` is drawn from a
  generator seeded with ``seed + e`` (``DistributedSampler``, with one replica
  when not distributed). A resumed run therefore sees exactly the batches an
  uninterrupted one would.
- Length bucketing (``fit(..., lengths=...)`` with ``TrainConfig(length_window=w)``):
  the epoch's shuffled examples are cut into windows of ``w`` batches, each window is
  sorted by length and cut into batches, and the batches are shuffled (see
  :func:`length_grouped_batches`). Batches then need little padding, so unpadded
  models waste little on it; the price is that a batch is no longer a uniform random
  sample (its examples have similar lengths), while which window an example falls in,
  and the order of the batches, stay random.
- ``out_dir/metrics.jsonl`` gets one JSON line per logged step;
  ``out_dir/checkpoint.pt`` holds everything needed to continue bit-for-bit
  (model, optimiser, schedule, step, data position, python / numpy / torch RNG
  states of every rank). It stores only tensors and plain Python values, so it
  loads with ``torch.load(..., weights_only=True)``. A checkpoint is written only
  when the weights and the running loss are finite; the previous ones are kept as
  ``checkpoint.1.pt``, ... (``keep_checkpoints``), each with a ``.sha256`` file, and a
  resume takes the newest one whose checksum matches, saying which it skipped.
- Launched by ``torchrun --nproc_per_node N`` (``WORLD_SIZE > 1``), the model is
  wrapped in ``DistributedDataParallel`` over the gloo backend, the data are
  sharded, ``batch_size`` is per process, and only rank 0 writes files and shows
  progress.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset
from tqdm.auto import tqdm

from kexue.train.step import LossFn, Step, check_scalar_loss, plain_step

EvalFn = Callable[[nn.Module], Mapping[str, float]]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit`.

    The length of training is ``steps`` optimiser steps, or ``epochs`` passes over the data
    (``ceil(epochs * batches per epoch)`` steps; fractions allowed); give one of them.
    ``warmup`` is a fraction of the training steps when below 1, else a number of steps. The
    learning rate rises linearly over the warm-up (``lr * k / warmup`` at step ``k``)
    and then decays linearly to 0 at the end of training. ``clip_norm=None`` turns
    clipping off; the logged ``grad_norm`` is always the norm *before* clipping.
    Records are written every ``log_every`` steps, at every evaluation and at the
    last step; ``eval_every=0`` evaluates only at the end, ``checkpoint_every=0``
    never checkpoints, and ``"epoch"`` for either means at the end of every epoch. ``progress`` shows a tqdm bar, automatically hidden when
    stderr is not a terminal or the ``CI`` environment variable is set.
    ``length_window > 0`` groups the examples into batches of similar length within
    windows of that many batches (needs ``fit(..., lengths=...)``; module docstring).
    """

    steps: int | None = None
    batch_size: int = 32
    epochs: float | None = None
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: float = 0.0
    clip_norm: float | None = 1.0
    eval_every: int | str = 0
    log_every: int = 10
    checkpoint_every: int | str = 0
    out_dir: str | Path | None = None
    resume: bool = False
    seed: int = 0
    progress: bool = True
    shuffle: bool = True
    drop_last: bool = False
    keep_checkpoints: int = 2
    length_window: int = 0

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("TrainConfig needs steps or epochs (one of them), got "
                             f"steps={self.steps!r} and epochs={self.epochs!r}")
        names = ("batch_size", "log_every", "keep_checkpoints")
        for name in names if self.steps is None else ("steps", *names):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(
                self.epochs, (int, float)) or not 0 < self.epochs < math.inf):
            raise ValueError(f"TrainConfig.epochs must be a finite number > 0, got "
                             f"{self.epochs!r}")
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value == "epoch":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an int >= 0 or 'epoch', got "
                                 f"{value!r}")
        if isinstance(self.length_window, bool) or not isinstance(self.length_window, int) \
                or self.length_window < 0:
            raise ValueError(f"TrainConfig.length_window must be an int >= 0, got "
                             f"{self.length_window!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"TrainConfig.clip_norm must be > 0 or None, got {self.clip_norm!r}")
        if not 0 <= self.warmup:
            raise ValueError(f"TrainConfig.warmup must be >= 0, got {self.warmup!r}")
        if self.warmup >= 1 and not float(self.warmup).is_integer():
            raise ValueError(
                f"TrainConfig.warmup >= 1 counts steps and must be whole, got {self.warmup!r}"
            )
        if self.steps is not None and self.warmup_steps > self.steps:
            raise ValueError(
                f"TrainConfig.warmup is {self.warmup_steps} steps, more than steps={self.steps}"
            )
        if not 0 <= self.seed < 2**32 - 1024:  # numpy seeds must fit in 32 bits (+ rank)
            raise ValueError(f"TrainConfig.seed must be in [0, 2**32 - 1024), got {self.seed!r}")
        if (self.checkpoint_every or self.resume) and self.out_dir is None:
            raise ValueError(
                "TrainConfig.out_dir is required with checkpoint_every > 0 or resume=True, "
                f"got out_dir=None (checkpoint_every={self.checkpoint_every}, "
                f"resume={self.resume})"
            )

    @property
    def warmup_steps(self) -> int:
        """Warm-up steps of a ``steps`` config (see :meth:`warmup_steps_of` for ``epochs``)."""
        if self.steps is None:
            raise ValueError("an epochs config knows its steps only with the data: use "
                             "warmup_steps_of(total_steps(batches_per_epoch))")
        return self.warmup_steps_of(self.steps)

    def warmup_steps_of(self, total: int) -> int:
        return round(self.warmup * total) if self.warmup < 1 else int(self.warmup)

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimiser steps of the whole run: ``steps``, or ``ceil(epochs * batches_per_epoch)``."""
        if self.steps is not None:
            return self.steps
        total = max(1, math.ceil(self.epochs * batches_per_epoch - 1e-9))
        if self.warmup_steps_of(total) > total:
            raise ValueError(f"TrainConfig.warmup is {self.warmup_steps_of(total)} steps, more "
                             f"than the {total} steps of {self.epochs} epoch(s)")
        return total

    def _every(self, value: int | str, step: int, end_of_epoch: bool) -> bool:
        if value == "epoch":
            return end_of_epoch
        return value > 0 and step % value == 0


@dataclass
class TrainResult:
    """What :func:`fit` returns: the last step reached, every logged record, the last
    evaluation (``None`` without ``eval_fn``)."""

    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    last_eval: dict[str, float] | None = None


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def linear_warmup_decay(warmup: int, steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr for optimiser step ``i`` (0-based), for ``LambdaLR``:
    ``(i + 1) / warmup`` during the warm-up, then ``(steps - i) / (steps - warmup)``,
    so the first step already moves and the rate reaches 0 after the last step."""

    def factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        return max(0.0, (steps - i) / max(1, steps - warmup))

    return factor


def length_grouped_batches(batches: list[list[int]], lengths: Sequence[int], window: int,
                           generator: torch.Generator | None = None) -> list[list[int]]:
    """Regroup index ``batches`` so each holds examples of similar length.

    Consecutive ``window`` batches are pooled, sorted by ``lengths[i]`` (longest first,
    ties in the given order) and cut back into batches of the same sizes; the batches
    are then put in a random order (``generator``). Every example stays in the epoch
    exactly once and in its window.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out = []
    for start in range(0, len(batches), window):
        chunk = batches[start:start + window]
        pooled = np.concatenate([np.asarray(b, dtype=np.int64) for b in chunk])
        pooled = pooled[np.argsort(-np.asarray(lengths)[pooled], kind="stable")]
        cuts = np.cumsum([len(b) for b in chunk])[:-1]
        out.extend(part.tolist() for part in np.split(pooled, cuts))
    order = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in order]


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: Any,
    config: TrainConfig,
    *,
    eval_fn: EvalFn | None = None,
    step: Step = plain_step,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    param_groups: list[dict[str, Any]] | None = None,
    lengths: Sequence[int] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimiser steps (or ``config.epochs`` passes) and
    return a :class:`TrainResult`.

    Args:
        model: any ``nn.Module``; trained in place, left in the mode it came in.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor`` (``model`` is the
            ``DistributedDataParallel`` wrapper under torchrun).
        train_data: a map-style ``Dataset`` or a sequence of examples.
        config: a :class:`TrainConfig`.
        eval_fn: ``eval_fn(model) -> {name: number}``, called in ``model.eval()``
            under ``torch.no_grad()`` every ``config.eval_every`` steps (or epoch) and at the
            end, on the unwrapped model and on rank 0 only (so it must not call
            collectives); its result reaches every rank. Logged as ``eval_<name>``.
        step: how a batch becomes gradients (the step protocol of
            :mod:`kexue.train.step`); ``plain_step`` is forward + backward.
        collate_fn: turns a list of examples into a batch (default: torch's
            ``default_collate``).
        optimizer: a ready optimiser over ``model``'s parameters; its learning
            rates are scaled by the schedule and ``lr`` / ``weight_decay`` / ``betas``
            of ``config`` are ignored. Default: AdamW (fused where the parameters
            allow it) with no weight decay on 1-D parameters (biases, norm weights).
        param_groups: parameter groups for the default AdamW instead of the
            decay / no-decay split (options missing from a group come from ``config``).
        lengths: the length (e.g. token count) of each example of ``train_data``, used
            with ``config.length_window`` to batch examples of similar length.

    Each step: zero the gradients, ``step(model, batch, loss_fn)``, clip to
    ``clip_norm``, optimiser step, schedule step. With ``out_dir`` set, the loop
    appends records ``{step, epoch, loss, lr, grad_norm, elapsed, eval_*}`` to
    ``metrics.jsonl`` (``loss`` is the mean over the steps since the previous
    record and over ranks; ``lr`` the rate that step used) and, with
    ``checkpoint_every``, writes ``checkpoint.pt`` atomically. ``resume=True``
    continues from that checkpoint when it exists; the final weights are then
    bit-identical to those of an uninterrupted run on the same hardware and
    thread count. A fresh run seeds Python, NumPy and torch with ``config.seed + rank``
    (build the model before calling ``fit``, after your own ``seed_everything``).
    Raises ``FloatingPointError`` when the mean loss of a record is not finite.
    """
    _check_arguments(model, loss_fn, train_data, eval_fn, step, collate_fn, optimizer,
                     param_groups)
    if config.length_window and lengths is None:
        raise ValueError("TrainConfig.length_window > 0 needs fit(..., lengths=...), got None")
    if lengths is not None and len(lengths) != len(train_data):
        raise ValueError(f"lengths must give one length per example ({len(train_data)}), "
                         f"got {len(lengths)}")
    created_group = _init_distributed()
    try:
        return _fit(model, loss_fn, train_data, config, eval_fn, step, collate_fn, optimizer,
                    param_groups, lengths)
    finally:
        if created_group:
            dist.destroy_process_group()


def _fit(model, loss_fn, train_data, config, eval_fn, step, collate_fn, optimizer, param_groups,
         lengths):
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    out_dir = Path(config.out_dir) if config.out_dir is not None else None

    # --- data: the order of epoch e is a function of (seed, e) only -------------------
    sampler = DistributedSampler(train_data, num_replicas=world, rank=rank,
                                 shuffle=config.shuffle, seed=config.seed,
                                 drop_last=config.drop_last)
    batches_per_epoch = len(BatchSampler(sampler, config.batch_size, config.drop_last))
    if batches_per_epoch == 0:
        raise ValueError(
            f"train_data has {len(train_data)} examples, too few for one batch of "
            f"batch_size={config.batch_size} on each of {world} process(es) with drop_last=True"
        )
    total_steps = config.total_steps(batches_per_epoch)
    # A private generator: creating a DataLoader iterator draws a seed from it, which
    # would otherwise come from (and shift) the global torch RNG that dropout uses.
    loader_generator = torch.Generator().manual_seed(config.seed)

    def epoch_batches(epoch: int, skip: int):
        sampler.set_epoch(epoch)
        index_batches = list(BatchSampler(sampler, config.batch_size, config.drop_last))
        if config.length_window:
            g = torch.Generator().manual_seed(config.seed + epoch)
            index_batches = length_grouped_batches(index_batches, lengths, config.length_window, g)
        return iter(DataLoader(train_data, batch_sampler=index_batches[skip:],
                               collate_fn=collate_fn, num_workers=0,
                               generator=loader_generator))

    # --- optimiser and schedule -------------------------------------------------------
    if optimizer is None:
        groups = param_groups if param_groups is not None else _decay_groups(model, config)
        optimizer = _adamw(groups, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(config.warmup_steps_of(total_steps), total_steps))

    # --- state: fresh, or continued from the checkpoint ----------------------------
    state = {"step": 0, "epoch": 0, "position": 0, "elapsed": 0.0, "loss_sum": 0.0,
             "loss_count": 0, "history": []}
    checkpoint, checkpoint_path = None, None
    if config.resume:
        checkpoint, checkpoint_path = _load_checkpoint(out_dir, config.keep_checkpoints)
    if checkpoint is not None:
        _check_checkpoint(checkpoint, checkpoint_path, config, world, total_steps)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = checkpoint["state"]
    else:
        seed_everything(config.seed + rank)  # ranks draw different dropout masks

    history: list[dict[str, Any]] = list(state["history"])
    metrics_file = None
    if out_dir is not None and rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        # The file mirrors this run: records after the checkpoint (written before a
        # crash) are dropped, and a fresh run starts an empty file.
        with open(out_dir / METRICS_NAME, "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in history)
        metrics_file = open(out_dir / METRICS_NAME, "a")  # noqa: SIM115  (closed in finally)

    was_training = model.training
    model.train()
    train_model = DistributedDataParallel(model) if distributed else model
    if checkpoint is not None:  # after DDP's construction, which may draw random numbers
        _set_rng_state(checkpoint["rng"][rank])

    step_num, epoch, position = state["step"], state["epoch"], state["position"]
    loss_sum = torch.tensor(state["loss_sum"], dtype=torch.float64)
    loss_count = state["loss_count"]
    last_eval = _last_eval(history)
    params = [p for p in model.parameters() if p.requires_grad]
    show_progress = (config.progress and rank == 0 and sys.stderr.isatty()
                     and not os.environ.get("CI"))
    bar = tqdm(total=total_steps, initial=step_num, disable=not show_progress,
               dynamic_ncols=True)
    start_time = time.perf_counter() - state["elapsed"]
    batches = epoch_batches(epoch, position)
    try:
        while step_num < total_steps:
            try:
                batch = next(batches)
            except StopIteration:
                epoch, position = epoch + 1, 0
                batches = epoch_batches(epoch, 0)
                continue
            position += 1
            step_num += 1
            is_last = step_num == total_steps
            end_of_epoch = position == batches_per_epoch
            do_eval = eval_fn is not None and (
                is_last or config._every(config.eval_every, step_num, end_of_epoch))
            do_log = do_eval or is_last or step_num % config.log_every == 0

            # --- one optimisation step ------------------------------------------------
            lr = scheduler.get_last_lr()[0]
            optimizer.zero_grad(set_to_none=True)
            loss = check_scalar_loss(step(train_model, batch, loss_fn)).detach()
            grad_norm = None
            if config.clip_norm is not None:
                grad_norm = nn.utils.clip_grad_norm_(params, config.clip_norm)
            elif do_log:
                grad_norm = nn.utils.get_total_norm([p.grad for p in params
                                                     if p.grad is not None])
            optimizer.step()
            scheduler.step()
            loss_sum += loss.double().cpu()
            loss_count += 1
            bar.update(1)

            # --- record, evaluate, checkpoint ----------------------------------------
            if do_log:
                mean_loss = loss_sum / loss_count
                if distributed:
                    dist.all_reduce(mean_loss)
                    mean_loss /= world
                mean_loss = mean_loss.item()
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"training loss is {mean_loss} over steps "
                        f"{step_num - loss_count + 1}..{step_num}")
                record = {"step": step_num, "epoch": epoch, "loss": mean_loss, "lr": lr,
                          "grad_norm": float(grad_norm) if grad_norm is not None else None,
                          "elapsed": time.perf_counter() - start_time}
                loss_sum.zero_()
                loss_count = 0
                if do_eval:
                    last_eval = _evaluate(model, eval_fn, rank, distributed)
                    record.update({f"eval_{k}": v for k, v in last_eval.items()})
                history.append(record)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                bar.set_postfix(loss=f"{mean_loss:.4g}", lr=f"{lr:.3g}")

            if config.checkpoint_every and (
                    is_last or config._every(config.checkpoint_every, step_num, end_of_epoch)):
                rng = [_rng_state()]
                if distributed:
                    rng = [None] * world
                    dist.all_gather_object(rng, _rng_state())
                if rank == 0:
                    _check_finite(model, loss_sum, step_num, out_dir)
                    _write_checkpoint({
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "state": {"step": step_num, "epoch": epoch, "position": position,
                                  "elapsed": time.perf_counter() - start_time,
                                  "loss_sum": loss_sum.item(), "loss_count": loss_count,
                                  "history": history},
                        "rng": rng,
                        "world_size": world,
                        "config": {k: str(v) if isinstance(v, Path) else v
                                   for k, v in dataclasses.asdict(config).items()},
                    }, out_dir, config.keep_checkpoints)

        if step_num == total_steps and eval_fn is not None and last_eval is None:
            last_eval = _evaluate(model, eval_fn, rank, distributed)  # resumed at the end
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
        model.train(was_training)
    return TrainResult(step=step_num, history=history, last_eval=last_eval)


# --- helpers ------------------------------------------------------------------------


def _check_arguments(model, loss_fn, train_data, eval_fn, step, collate_fn, optimizer,
                     param_groups) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, fn in (("loss_fn", loss_fn), ("step", step)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    for name, fn in (("eval_fn", eval_fn), ("collate_fn", collate_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
    if isinstance(train_data, IterableDataset) or not (
            hasattr(train_data, "__len__") and hasattr(train_data, "__getitem__")):
        raise ValueError("train_data must be a map-style Dataset or a sequence (with __len__ "
                         f"and __getitem__), got {type(train_data).__name__}")
    if len(train_data) == 0:
        raise ValueError("train_data is empty; expected at least one example")
    if optimizer is not None and param_groups is not None:
        raise ValueError("pass either optimizer or param_groups, not both")
    if optimizer is None and param_groups is None and not any(
            p.requires_grad for p in model.parameters()):
        raise ValueError("model has no parameter with requires_grad=True; nothing to train")


def _init_distributed() -> bool:
    """Create the gloo process group under torchrun; True if this call created it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return False
    dist.init_process_group(backend="gloo")
    return True


def _adamw(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel over all parameters: ~10x faster than the per-tensor loop
    on CPU for MiniLM's 22M parameters, as transformers' Trainer uses) where the parameters'
    device and dtype allow it."""
    kwargs = {"lr": config.lr, "betas": config.betas, "weight_decay": config.weight_decay}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # e.g. parameters on a device without the kernel
        return torch.optim.AdamW(groups, **kwargs)


def _decay_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Weight decay on matrices and embeddings only: biases and norm weights (1-D) are
    left undecayed, as in BERT and GPT training."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _evaluate(model: nn.Module, eval_fn: EvalFn, rank: int, distributed: bool
              ) -> dict[str, float]:
    """Run ``eval_fn`` in eval mode without gradients on rank 0; share the result."""
    result = None
    if rank == 0:
        model.eval()
        try:
            with torch.no_grad():
                out = eval_fn(model)
        finally:
            model.train()
        if not isinstance(out, Mapping):
            raise ValueError(f"eval_fn must return a mapping name -> number, got "
                             f"{type(out).__name__}")
        result = {str(k): float(v) for k, v in out.items()}
    if distributed:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    return result


def _last_eval(history: list[dict[str, Any]]) -> dict[str, float] | None:
    for record in reversed(history):
        evals = {k[len("eval_"):]: v for k, v in record.items() if k.startswith("eval_")}
        if evals:
            return evals
    return None


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values (loadable with weights_only=True)."""
    version, keys, gauss = random.getstate()
    name, np_keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(keys), gauss],
             "numpy": [name, np_keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    name, np_keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(np_keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one: a
    uniquely named temporary file in the same folder, flushed to disk, then renamed (a
    crash never leaves a torn file). Checkpoints and the evidence caches use it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_paths(out_dir: Path, keep: int) -> list[Path]:
    """Newest first: ``checkpoint.pt``, ``checkpoint.1.pt``, ... (``keep`` in all)."""
    return [out_dir / CHECKPOINT_NAME] + [out_dir / f"checkpoint.{i}.pt" for i in range(1, keep)]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_checkpoint(obj: dict[str, Any], out_dir: Path, keep: int) -> None:
    """Rotate the kept checkpoints, then write ``checkpoint.pt`` and its checksum."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    paths = checkpoint_paths(out_dir, keep)
    for newer, older in reversed(list(itertools.pairwise(paths))):
        if newer.exists():
            os.replace(newer, older)
            if _sidecar(newer).exists():
                os.replace(_sidecar(newer), _sidecar(older))
    atomic_write(_sidecar(paths[0]), hashlib.sha256(data).hexdigest())
    atomic_write(paths[0], data)


def _load_checkpoint(out_dir: Path, keep: int) -> tuple[dict | None, Path | None]:
    """The newest checkpoint whose bytes match their checksum, or (None, None)."""
    skipped = []
    for path in checkpoint_paths(out_dir, keep):
        if not path.exists():
            continue
        try:
            data = path.read_bytes()
            expected = _sidecar(path).read_text().strip()
            if hashlib.sha256(data).hexdigest() != expected:
                raise ValueError("checksum mismatch")
            checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  a corrupt checkpoint is skipped, not fatal
            skipped.append(f"{path} ({type(e).__name__}: {e})")
            continue
        if skipped:
            warnings.warn(f"skipped corrupt checkpoint(s) {'; '.join(skipped)}; resuming from "
                          f"{path}", stacklevel=3)
        return checkpoint, path
    if skipped:
        warnings.warn(f"every checkpoint is corrupt ({'; '.join(skipped)}); starting afresh",
                      stacklevel=3)
    return None, None


def _check_finite(model: nn.Module, loss_sum: torch.Tensor, step: int, out_dir: Path) -> None:
    """Refuse to checkpoint non-finite weights or losses (the last good one stays)."""
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad or not torch.isfinite(loss_sum).all():
        what = f"parameters {', '.join(bad[:5])}" if bad else "the training loss"
        raise FloatingPointError(
            f"{what} not finite at step {step}; no checkpoint written, the last good one in "
            f"{out_dir} is kept")


def _check_checkpoint(checkpoint: dict, path: Path, config: TrainConfig, world: int,
                      total_steps: int) -> None:
    saved = checkpoint["state"]["step"]
    if saved > total_steps:
        raise ValueError(f"{path} is at step {saved}, past the {total_steps} steps of this run")
    if checkpoint["world_size"] != world:
        raise ValueError(f"{path} was written by {checkpoint['world_size']} process(es), "
                         f"this run has {world}; the data order would not continue exactly")
    if checkpoint["config"]["batch_size"] != config.batch_size:
        raise ValueError(f"{path} was written with batch_size="
                         f"{checkpoint['config']['batch_size']}, this run has "
                         f"batch_size={config.batch_size}")


__all__ = ["TrainConfig", "TrainResult", "fit", "linear_warmup_decay", "seed_everything"]
