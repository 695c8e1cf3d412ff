"""Helper for tests/train/test_adversarial.py, launched by torchrun with 2 processes:

    python -m torch.distributed.run --nproc_per_node 2 _robust_ddp_script.py OUT_DIR [STEPS...]

Each rank trains the same small text classifier under ``fit`` with each robust step
(batch 4 per process) and saves its final weights to OUT_DIR/<step>_rank<r>.pt.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from kexue.train import FGM, VAT, GradientPenaltyStep, TrainConfig, fit, seed_everything

CONFIG = {"steps": 4, "batch_size": 4, "lr": 1e-2, "seed": 3, "progress": False,
          "clip_norm": None}
N_EXAMPLES = 32


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.lin = nn.Linear(6, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.tanh(self.emb(ids)).mean(1))


def make_model() -> Tiny:
    seed_everything(0)
    return Tiny()


def make_data() -> list:
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 11, (5,), generator=g), int(torch.randint(0, 3, (), generator=g)))
            for _ in range(N_EXAMPLES)]


def loss_fn(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


def make_steps(model: Tiny) -> dict:
    return {
        "fgm_common_per_example": FGM(model.emb, 0.5, variant="common", where="output",
                                      norm="per_example"),
        "fgm_author": FGM(model.emb, 0.5),
        "gradient_penalty": GradientPenaltyStep(model.emb, 1.0),
        "vat": VAT(model.emb, predict_fn=lambda m, b: m(b[0])),
    }


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    # One process group for all runs: fit would otherwise create and destroy one per call,
    # and re-creating a gloo group in the same process can hang.
    dist.init_process_group(backend="gloo")
    try:
        for name in sys.argv[2:] or make_steps(make_model()):
            model = make_model()
            step = make_steps(model)[name]
            fit(model, loss_fn, make_data(), TrainConfig(**CONFIG), step=step)
            torch.save(model.state_dict(), os.path.join(out, f"{name}_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
