"""Helper for tests/train/test_loop.py, launched by torchrun with 2 processes:

    python -m torch.distributed.run --nproc_per_node 2 _loop_ddp_script.py OUT_DIR

Each rank trains the dropout-free regression of ``_loop_script`` with batch 4 per
process and saves its final weights and result to OUT_DIR/rank<r>.pt.
"""

from __future__ import annotations

import os
import sys

import torch
from _loop_script import make_data, make_model, mse  # the script's directory is on sys.path

from kexue.train import TrainConfig, fit, seed_everything

DDP_CONFIG = {"steps": 10, "batch_size": 4, "lr": 1e-2, "warmup": 2, "log_every": 2,
              "eval_every": 5, "checkpoint_every": 5, "seed": 3, "progress": False}
N_EXAMPLES = 32


def full_data_mse(data):
    """An eval_fn: the MSE on all of ``data`` (returns a tensor; fit converts it)."""
    x = torch.stack([x for x, _ in data])
    y = torch.stack([y for _, y in data])
    return lambda model: {"mse": torch.nn.functional.mse_loss(model(x), y)}


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    seed_everything(0)
    model = make_model(dropout=0.0)
    data = make_data(N_EXAMPLES)
    result = fit(model, mse, data, TrainConfig(out_dir=os.path.join(out, "run"), **DDP_CONFIG),
                 eval_fn=full_data_mse(data))
    rank = int(os.environ["RANK"])
    torch.save({"model": model.state_dict(), "history": result.history,
                "last_eval": result.last_eval, "step": result.step},
               os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main()
