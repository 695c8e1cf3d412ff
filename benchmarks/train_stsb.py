"""``kexue train similarity`` against sentence-transformers' ``CoSENTLoss``, same budget.

Both fine-tune the bundled all-MiniLM-L6-v2 with CoSENT (scale 20) for one epoch over the
STS-B-en train split (5749 pairs), batch 32, AdamW lr 2e-5 with weight decay 0.01, 10%
linear warm-up then linear decay, gradient clipping at 1, max 256 tokens, mean pooling, on
the same 2 CPU threads; each validates once on STS-B-en dev (kexue: after the epoch, as the
recipe does; sentence-transformers: its ``EmbeddingSimilarityEvaluator`` after training).
Reported: test Spearman x100 (cosine against gold, the same function for both models),
the wall time of the whole training command (model loading, training, validation, saving),
and the agreement of the untrained starting point (both encode the test sentences with the
same MiniLM: max abs difference of the vectors).

Run: python benchmarks/train_stsb.py [--quick]   (writes benchmarks/results/train_stsb.json)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train_stsb.json"
BUDGET = {"epochs": 1, "batch_size": 32, "lr": 2e-5, "warmup_ratio": 0.1, "weight_decay": 0.01,
          "max_grad_norm": 1.0, "max_seq_length": 256, "scale": 20.0}


def write_tsv(rows, path: Path) -> Path:
    path.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows), encoding="utf-8")
    return path


def spearman(vectors: np.ndarray, gold: np.ndarray) -> float:
    from kexue.embed import sts_spearman

    n = len(gold)
    return 100 * sts_spearman(vectors[:n], vectors[n:], gold)


def run_kexue(train: Path, valid: Path, out: Path) -> float:
    from kexue import cli

    start = time.perf_counter()
    code = cli.main(["train", "similarity", "--data", str(train), "--valid", str(valid),
                     "--out", str(out), "--epochs", str(BUDGET["epochs"]),
                     "--batch-size", str(BUDGET["batch_size"]), "--lr", str(BUDGET["lr"]),
                     "--warmup", str(BUDGET["warmup_ratio"]),
                     "--max-length", str(BUDGET["max_seq_length"])])
    if code != 0:
        raise RuntimeError(f"kexue train exited with {code}")
    return time.perf_counter() - start


def run_sentence_transformers(train_rows, valid_rows, out: Path) -> tuple[float, object]:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
    )
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    from kexue.data import minilm_path

    start = time.perf_counter()
    model = SentenceTransformer(str(minilm_path()), device="cpu")
    model.max_seq_length = BUDGET["max_seq_length"]
    data = Dataset.from_dict({"sentence1": [r[0] for r in train_rows],
                              "sentence2": [r[1] for r in train_rows],
                              "score": [r[2] / 5 for r in train_rows]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=BUDGET["epochs"],
        per_device_train_batch_size=BUDGET["batch_size"], learning_rate=BUDGET["lr"],
        warmup_ratio=BUDGET["warmup_ratio"], weight_decay=BUDGET["weight_decay"],
        max_grad_norm=BUDGET["max_grad_norm"], lr_scheduler_type="linear", seed=0,
        use_cpu=True, report_to=[], save_strategy="no", logging_steps=50, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                         loss=CoSENTLoss(model, scale=BUDGET["scale"]))
    trainer.train()
    EmbeddingSimilarityEvaluator([r[0] for r in valid_rows], [r[1] for r in valid_rows],
                                 [r[2] / 5 for r in valid_rows], name="dev")(model)
    return time.perf_counter() - start, model


def main(out_path: str | Path | None = None, quick: bool = False) -> dict:
    torch.set_num_threads(2)
    from kexue.data import load_stsb
    from kexue.embed import SentenceEncoder

    train_rows, valid_rows, test_rows = (load_stsb(s, "en") for s in ("train", "dev", "test"))
    if quick:
        train_rows, valid_rows, test_rows = train_rows[:320], valid_rows[:200], test_rows[:200]
    gold = np.array([r[2] for r in test_rows])
    sentences = [r[0] for r in test_rows] + [r[1] for r in test_rows]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = write_tsv(train_rows, tmp / "train.tsv")
        valid = write_tsv(valid_rows, tmp / "valid.tsv")
        untuned = SentenceEncoder.from_pretrained(max_length=BUDGET["max_seq_length"])
        untuned_vectors = untuned.encode(sentences, progress=False)
        from sentence_transformers import SentenceTransformer

        from kexue.data import minilm_path

        st_untuned = SentenceTransformer(str(minilm_path()), device="cpu").encode(
            sentences, normalize_embeddings=False)
        agreement = float(np.abs(st_untuned - untuned_vectors / np.linalg.norm(
            untuned_vectors, axis=1, keepdims=True)).max())  # MiniLM's folder normalises

        kexue_seconds = run_kexue(train, valid, tmp / "kexue")
        kexue_test = spearman(SentenceEncoder.from_pretrained(tmp / "kexue").encode(
            sentences, progress=False), gold)
        summary = json.loads((tmp / "kexue" / "summary.json").read_text())
        st_seconds, st_model = run_sentence_transformers(train_rows, valid_rows, tmp / "st")
        st_test = spearman(st_model.encode(sentences), gold)
    result = {
        "setup": {"model": "all-MiniLM-L6-v2 (bundled)", "data": "STS-B-en",
                  "train_pairs": len(train_rows), "valid_pairs": len(valid_rows),
                  "test_pairs": len(test_rows), **BUDGET, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "quick": quick,
                  "timed": "the whole training command: loading, one epoch, validation, saving"},
        "untuned_test_spearman": spearman(untuned_vectors, gold),
        "kexue": {"test_spearman": kexue_test, "seconds": kexue_seconds,
                  "valid_spearman": summary["best"]["spearman"]},
        "sentence_transformers": {"test_spearman": st_test, "seconds": st_seconds},
        "time_ratio_kexue_over_st": kexue_seconds / st_seconds,
        "untuned_agreement_max_abs_diff": agreement,
    }
    print(json.dumps(result, indent=1))
    out = Path(out_path) if out_path is not None else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="320 training pairs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    main(args.out, quick=args.quick)
    sys.exit(0)
