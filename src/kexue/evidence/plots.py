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
