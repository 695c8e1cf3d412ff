"""Helper for tests/train/test_loop.py: a tiny regression trained by ``kexue.train.fit``.

    python _loop_script.py OUT_DIR STEPS CHECKPOINT_EVERY [--kill-after K] [--resume]

Saves the final weights to OUT_DIR/final.pt. With ``--kill-after K`` the process
sends itself SIGKILL at the start of step K + 1 (after step K and any checkpoint).
The model has dropout and the collate function draws from Python's and NumPy's
global generators, so a resumed run only matches if every RNG state is restored.
"""

from __future__ import annotations

import argparse
import os
import random
import signal

import numpy as np
import torch
from torch import nn

from kexue.train import TrainConfig, fit, plain_step, seed_everything

IN_FEATURES = 8


def make_data(n: int, seed: int = 123) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n examples (x, y) with y = x @ w + small noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, IN_FEATURES, generator=g)
    w = torch.randn(IN_FEATURES, 1, generator=g)
    y = x @ w + 0.01 * torch.randn(n, 1, generator=g)
    return list(zip(x, y))


def make_model(dropout: float = 0.2, hidden: int = 32) -> nn.Module:
    return nn.Sequential(nn.Linear(IN_FEATURES, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def noisy_collate(examples):
    """Stack, then add input noise from NumPy and flip the sign of a pair from Python's
    random: both global generators feed the training data."""
    x = torch.stack([e[0] for e in examples])
    y = torch.stack([e[1] for e in examples])
    x = x + torch.from_numpy(np.random.normal(0.0, 0.01, size=x.shape)).float()
    if random.random() < 0.5:
        x, y = -x, -y
    return x, y


class KillAfter:
    """A step that SIGKILLs its own process when asked for step ``after + 1``."""

    def __init__(self, after: int):
        self.after, self.calls = after, 0

    def __call__(self, model, batch, loss_fn):
        self.calls += 1
        if self.calls > self.after:
            os.kill(os.getpid(), signal.SIGKILL)
        return plain_step(model, batch, loss_fn)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("steps", type=int)
    parser.add_argument("checkpoint_every", type=int)
    parser.add_argument("--kill-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(1)
    seed_everything(0)
    model = make_model()
    data = make_data(22)  # 6 batches of 4 per epoch, the last one of 2
    config = TrainConfig(steps=args.steps, batch_size=4, lr=1e-2, warmup=0.2, log_every=3,
                         eval_every=4, checkpoint_every=args.checkpoint_every,
                         out_dir=args.out_dir, resume=args.resume, seed=7, progress=False)
    step = KillAfter(args.kill_after) if args.kill_after is not None else plain_step
    x_eval = torch.stack([x for x, _ in data])
    y_eval = torch.stack([y for _, y in data])
    fit(model, mse, data, config, step=step, collate_fn=noisy_collate,
        eval_fn=lambda m: {"mse": nn.functional.mse_loss(m(x_eval), y_eval).item()})
    torch.save(model.state_dict(), os.path.join(args.out_dir, "final.pt"))


if __name__ == "__main__":
    main()
