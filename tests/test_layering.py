"""Imports point one way, from the outside in (DESIGN.md, "Layering").

``cli`` -> ``experiments`` -> ``evidence`` -> ``recipes`` (``kexue train``'s recipes) -> the
technique packages (``embed``, ``generate``, ``explain``, ``generative``, ``graph``,
``physics``) -> ``train`` (the loop and the step wrappers, which know no model, so that the
packages above can train with them: ``SentenceEncoder.fit``) -> ``models`` -> ``nn``;
``losses`` and ``data`` are leaves that any layer may use and that import no other part of
kexue. Every import statement counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kexue

PACKAGE = Path(kexue.__file__).resolve().parent
RANK = {
    "data": 0, "losses": 0,
    "nn": 1,
    "models": 2,
    "train": 2.5, "embed": 3, "generate": 3, "explain": 3, "generative": 3, "graph": 3,
    "physics": 3,
    "recipes": 3.5,
    "evidence": 4,
    "experiments": 5,
    "cli": 6,
}
LEAVES = {"data", "losses"}


def _part(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "kexue" or len(parts) < 2:
        return None
    return parts[1]


def kexue_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level kexue part) of every ``import kexue.X`` / ``from kexue.X import``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "kexue":  # from kexue import data, nn
                names = [f"kexue.{a.name}" for a in node.names]
        else:
            continue
        found += [(node.lineno, p) for n in names if (p := _part(n)) is not None]
    return found


def violations(path: Path) -> list[str]:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own not in RANK:
        return []
    bad = []
    for line, other in kexue_imports(path):
        if other == own or other not in RANK:
            continue
        if own in LEAVES or RANK[other] >= RANK[own]:
            bad.append(f"{path.relative_to(PACKAGE)}:{line} ({own}) imports kexue.{other}")
    return bad


def test_every_subpackage_has_a_rank():
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if not p.name.startswith(("_", ".")) and (p.is_dir() or p.suffix == ".py")}
    parts.discard("__pycache__")
    assert parts <= set(RANK), f"add a layer for {parts - set(RANK)} in this test and DESIGN.md"


def test_imports_point_inwards():
    bad = [v for p in sorted(PACKAGE.rglob("*.py")) for v in violations(p)]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("from kexue.evidence import Claim\n", ["nn/x.py:1 (nn) imports kexue.evidence"]),
    ("def f():\n    import kexue.models.bert\n", ["nn/x.py:2 (nn) imports kexue.models"]),
    ("from kexue import losses, data\n", []),
])
def test_the_checker_catches_an_upward_import(tmp_path, monkeypatch, source, expected):
    (tmp_path / "nn").mkdir()
    f = tmp_path / "nn" / "x.py"
    f.write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path)
    assert violations(f) == expected
