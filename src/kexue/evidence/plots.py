"""Plot helpers shared by experiments (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def grouped_bars(
    groups: dict[str, dict[str, float]],
    path: Path,
    ylabel: str = "",
    title: str = "",
    errors: dict[str, dict[str, float]] | None = None,
) -> Path:
    """Bars grouped by the outer key, one colour per inner key."""
    outer = list(groups)
    inner = list(next(iter(groups.values())))
    width = 0.8 / len(inner)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(outer) + 2), 3.6))
    for j, key in enumerate(inner):
        x = np.arange(len(outer)) + (j - (len(inner) - 1) / 2) * width
        yerr = [errors[o][key] for o in outer] if errors else None
        ax.bar(x, [groups[o][key] for o in outer], width, yerr=yerr, capsize=2, label=key)
    ax.set_xticks(np.arange(len(outer)), outer)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lines(
    series: dict[str, tuple[list[float], list[float]]],
    path: Path,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    logx: bool = False,
    vline: float | None = None,
) -> Path:
    """One line per series: name -> (x, y)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o", ms=3, label=name)
    if vline is not None:
        ax.axvline(vline, color="grey", ls="--", lw=1)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def panels(
    panels: dict[str, dict[str, tuple[list[float], list[float]]]],
    path: Path,
    kind: str = "line",
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    marks: list[tuple[float, float]] | None = None,
    columns: int = 4,
) -> Path:
    """A grid of 2-D panels with equal axes: panel -> series -> (x, y), drawn as lines
    (``kind="line"``, e.g. trajectories) or small points (``kind="scatter"``, e.g. samples);
    ``marks`` (e.g. an equilibrium or the data's modes) are red dots in every panel."""
    if kind not in ("line", "scatter"):
        raise ValueError(f"kind must be 'line' or 'scatter', got {kind!r}")
    names = list(panels)
    cols = min(columns, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for label, (x, y) in panels[name].items():
            if kind == "line":
                ax.plot(x, y, lw=0.8, label=label)
            else:
                ax.scatter(x, y, s=2, alpha=0.5, label=label)
        if marks:
            ax.scatter(*zip(*marks), s=18, color="red", zorder=3)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        if len(panels[name]) > 1:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
