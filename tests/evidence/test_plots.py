import pytest

from kexue.evidence.plots import panels


def test_panels_draw_lines_and_scatters(tmp_path):
    data = {"a": {"θ": ([0, 1, 2], [0, 1, 0])}, "b": {"x": ([1], [1]), "y": ([0], [2])}}
    for kind in ("line", "scatter"):
        path = panels(data, tmp_path / f"{kind}.png", kind=kind, marks=[(0.0, 0.0)], columns=1)
        assert path.exists() and path.stat().st_size > 1000


def test_panels_reject_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        panels({"a": {"s": ([0], [0])}}, tmp_path / "x.png", kind="bars")
