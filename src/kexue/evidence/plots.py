"""The one plotting helper every experiment uses (matplotlib, Agg backend).

Every series gets its own colour *and* marker and line style, so 12 curves stay apart in
print and for colour-blind readers; legends sit outside the data; axes are scaled to the
data (a bar chart starts at zero only when that does not flatten the differences); seed
spread is drawn as error bars; and the post's own numbers, where it reports them, are drawn
as black reference markers beside ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["STYLES", "grouped_bars", "lines", "style"]

# tab10 minus grey, ten markers, four line styles: (colour, marker, line style) per series
_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#bcbd22", "#17becf"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
_LINES = ["-", "--", "-.", ":"]
STYLES = [(_COLOURS[i % len(_COLOURS)], _MARKERS[i % len(_MARKERS)],
           _LINES[(i // len(_COLOURS)) % len(_LINES)]) for i in range(len(_COLOURS) * len(_LINES))]
REFERENCE = {"color": "black", "marker": "_", "markersize": 18, "markeredgewidth": 2.5,
             "linestyle": "none", "zorder": 5}


def style(i: int) -> tuple[str, str, str]:
    """(colour, marker, line style) of series ``i``: all three differ between neighbours."""
    return STYLES[i % len(STYLES)]


def _limits(low: float, high: float, start_at_zero: bool) -> tuple[float, float]:
    """A y-range around the data; from zero only if that keeps differences visible."""
    if start_at_zero and low >= 0 and (high <= 0 or low / high < 0.5):
        return 0.0, high * 1.08
    pad = 0.08 * (high - low or abs(high) or 1.0)
    return low - pad, high + pad


def _finish(fig, ax, path: Path, title: str, legend: bool) -> Path:
    ax.set_title(title, fontsize=10)
    if legend:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def grouped_bars(
    groups: Mapping[str, Mapping[str, float]],
    path: str | Path,
    ylabel: str = "",
    title: str = "",
    errors: Mapping[str, Mapping[str, float]] | None = None,
    reference: Mapping[str, Mapping[str, float]] | None = None,
    start_at_zero: bool = True,
) -> Path:
    """Bars grouped by the outer key (e.g. task), one styled bar per inner key (e.g. arm).

    ``errors[outer][inner]``: half-height of the error bar (std over seeds).
    ``reference[outer][inner]``: the post's number for that bar, drawn as a black tick.
    """
    outer = list(groups)
    inner = list(dict.fromkeys(k for g in groups.values() for k in g))
    width = 0.8 / len(inner)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(outer) + 2.5), 3.6))
    lows, highs = [], []
    for j, key in enumerate(inner):
        colour = style(j)[0]
        x = np.arange(len(outer)) + (j - (len(inner) - 1) / 2) * width
        y = np.array([groups[o].get(key, np.nan) for o in outer], dtype=float)
        err = np.array([(errors or {}).get(o, {}).get(key, 0.0) for o in outer], dtype=float)
        hatch = ["", "//", "..", "xx"][j // len(_COLOURS) % 4]
        ax.bar(x, y, width, yerr=err if errors else None, capsize=2, label=key, color=colour,
               hatch=hatch, edgecolor="white", linewidth=0.5)
        ok = np.isfinite(y)
        lows.append(np.min((y - err)[ok], initial=np.inf))
        highs.append(np.max((y + err)[ok], initial=-np.inf))
        ref = [(reference or {}).get(o, {}).get(key) for o in outer]
        pts = [(xi, r) for xi, r in zip(x, ref) if r is not None]
        if pts:
            ax.plot(*zip(*pts), **REFERENCE, label="post's number" if not any(
                h.get_label() == "post's number" for h in ax.lines) else None)
            lows.append(min(r for _, r in pts))
            highs.append(max(r for _, r in pts))
    ax.set_xticks(np.arange(len(outer)), outer, fontsize=8)
    low, high = min(lows), max(highs)
    if np.isfinite(low) and np.isfinite(high):
        ax.set_ylim(*_limits(low, high, start_at_zero))
    ax.set_ylabel(ylabel)
    return _finish(fig, ax, Path(path), title, legend=True)


def lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    logx: bool = False,
    vline: float | None = None,
    errors: Mapping[str, Sequence[float]] | None = None,
    reference: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    logy: bool = False,
) -> Path:
    """One styled line per series: ``name -> (x, y)``; ``errors[name]`` gives a band of
    one std over seeds; ``reference[name] = (x, y)`` the post's points for that series
    (hollow markers in the series' colour). ``vline`` marks e.g. the training length."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for i, (name, (x, y)) in enumerate(series.items()):
        colour, marker, ls = style(i)
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ax.plot(x, y, color=colour, marker=marker, linestyle=ls, ms=4, lw=1.4, label=name)
        if errors and name in errors:
            e = np.asarray(errors[name], dtype=float)
            ax.fill_between(x, y - e, y + e, color=colour, alpha=0.15, lw=0)
        if reference and name in reference:
            rx, ry = reference[name]
            ax.plot(rx, ry, marker=marker, ms=8, mfc="none", mec=colour, mew=1.5,
                    linestyle="none", label=f"{name} (post)")
    if vline is not None:
        ax.axvline(vline, color="grey", ls="--", lw=1)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _finish(fig, ax, Path(path), title, legend=len(series) > 1 or bool(reference))


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
        for j, (label, (x, y)) in enumerate(panels[name].items()):
            colour, marker, dash = style(j)
            if kind == "line":
                ax.plot(x, y, lw=0.8, color=colour, linestyle=dash, label=label)
            else:
                ax.scatter(x, y, s=2, alpha=0.5, color=colour, marker=marker, label=label)
        if marks:
            ax.scatter(*zip(*marks), s=18, color="red", marker="x", zorder=3)
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
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
