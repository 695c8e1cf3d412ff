"""Write an evidence report from result records.

The records are the dictionaries produced by :mod:`kexue.evidence.suite`; this
module only formats them, so ``kexue report DIR`` can redraw a report from its
``results.json`` alone.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

from kexue.evidence.cache import atomic_write
from kexue.evidence.records import merge_results, safe_name

matplotlib.use("Agg")
import matplotlib.pyplot as plt

VERDICT_ICON = {
    "reproduced": "✅",
    "not reproduced": "❌",
    "inconclusive": "➖",
    "skipped": "⏭",
    "error": "⚠",
}


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:.1f}"


def _stat(m: dict[str, Any]) -> str:
    return _fmt(m["mean"]) if m["n"] < 2 else f"{_fmt(m['mean'])} ± {_fmt(m['std'])}"


def _key_metrics(rec: dict[str, Any], n: int = 3) -> str:
    metrics = rec.get("metrics") or {}
    return ", ".join(f"{k} {_stat(v)}" for k, v in list(metrics.items())[:n])


def summary_table(records: list[dict[str, Any]]) -> str:
    """A plain-text table for the terminal."""
    rows = [("experiment", "techniques", "verdict", "time", "key metrics")]
    for r in records:
        t = f"{r['wall_time']:.0f}s" if "wall_time" in r else "-"
        rows.append((r["name"], " ".join(r["techniques"]), r["verdict"], t,
                     _key_metrics(r) or r.get("reason", "")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
        if j == 0:
            lines.append("-" * (sum(widths) + 8 + len(row[4])))
    return "\n".join(lines)


def _metrics_plot(out: Path, rec: dict[str, Any]) -> str | None:
    """A bar chart (mean ± std over seeds) for experiments that drew no figure."""
    metrics = rec.get("metrics") or {}
    if rec.get("figures") or len(metrics) < 2:
        return None
    names = list(metrics)
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) + 2), 3.2))
    ax.bar(range(len(names)), [metrics[k]["mean"] for k in names],
           yerr=[metrics[k]["std"] for k in names], capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_title(f"{rec['name']}: mean ± std over {len(rec['seeds'])} seed(s)", fontsize=9)
    fig.tight_layout()
    name = safe_name(rec["name"])
    rel = f"{name}/metrics.png"
    (out / name).mkdir(parents=True, exist_ok=True)
    fig.savefig(out / rel, dpi=110)
    plt.close(fig)
    return "metrics.png"


def _markdown(run: dict[str, Any], records: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    v = run.get("versions", {})
    lines = [
        "# kexue evidence report",
        "",
        f"Scale **{run['scale']}**, started {run['started']}, wall time "
        f"{run.get('wall_time', 0):.0f} s. "
        + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) + ".",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
        "| experiment | techniques | verdict | key metrics | time |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        t = f"{r['wall_time']:.0f} s" if "wall_time" in r else "-"
        key = _key_metrics(r) or r.get("reason", "")
        lines.append(f"| [{r['name']}](#{r['name']}) | {' '.join(r['techniques'])} | "
                     f"{VERDICT_ICON.get(r['verdict'], '')} {r['verdict']} | {key} | {t} |")
    for r in records:
        lines += ["", f"## {r['name']}", ""]
        c = r["claim"]
        lines += [
            f"*{c['post']}* ({c['date']}, <{c['url']}>), techniques {', '.join(r['techniques'])}.",
            "",
            f"**Claim.** {c['statement']}",
            "",
            f"**Reproduced if.** {c['condition']}",
        ]
        if c.get("reported"):
            lines += ["", f"**The post reports.** {c['reported']}"]
        lines += ["", f"**Verdict: {r['verdict']}**"
                  + (f" — {r['reason']}" if r.get("reason") else "")
                  + (" (cached)" if r.get("cached") else "")]
        if r.get("checks"):
            lines += [""] + [
                f"- {'✔' if ch['holds'] else ('✘' if ch['holds'] is False else '?')} "
                f"{ch['description']}: {ch['detail']}" for ch in r["checks"]
            ]
        if r.get("metrics"):
            seeds = r["seeds"]
            lines += ["", "| metric | mean ± std | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                      "|---|---|" + "---|" * len(seeds)]
            for k, m in r["metrics"].items():
                lines.append(f"| {k} | {_stat(m)} | "
                             + " | ".join(_fmt(x) for x in m["values"]) + " |")
        for table in r.get("tables", []):
            lines += ["", table]
        for fig in r.get("figures", []):
            lines += ["", f"![{fig}]({r['name']}/{fig})"]
        if r.get("samples"):
            lines += ["", "Samples:", "", "```"] + r["samples"] + ["```"]
        for note in r.get("notes", []):
            lines += ["", f"> {note}"]
        if "wall_time" in r:
            lines += ["", f"Wall time {r['wall_time']:.0f} s; seeds {r['seeds']}; scale {r['scale']}."]
        if r.get("data"):
            lines += ["", "Data: " + "; ".join(f"{k} ({d['source']}, {d['licence']})"
                                               for k, d in r["data"].items())]
    return "\n".join(lines) + "\n"


def _inline(text: str) -> str:
    """Escape, then turn **bold**, *italic*, `code` and <url> into HTML."""
    import re

    s = html.escape(text)
    s = re.sub(r"&lt;(https?://[^&]+)&gt;", r'<a href="\1">\1</a>', s)
    s = re.sub(r"\[([^\]]+)\]\(#([^)]+)\)", r'<a href="#\2">\1</a>', s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    s = re.sub(r"\*(.+?)\*", r"<i>\1</i>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def _html(markdown: str) -> str:
    """A small Markdown-to-HTML pass covering what :func:`_markdown` emits."""
    out, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                if not all(set(c) <= set("-:") for c in cells):
                    rows.append(cells)
                i += 1
            head, *body = rows
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body]
            out.append("</table>")
            continue
        if line.startswith("```"):
            i += 1
            block = []
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(html.escape(lines[i]))
                i += 1
            out.append("<pre>" + "\n".join(block) + "</pre>")
        elif line.startswith("## "):
            name = line[3:]
            out.append(f'<h2 id="{html.escape(name)}">{html.escape(name)}</h2>')
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1:-1]
            out.append(f'<p><img src="{html.escape(src)}" style="max-width:100%"></p>')
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{_inline(line[2:])}</blockquote>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             "pre{background:#f6f6f6;padding:6px}blockquote{color:#555}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>kexue evidence report"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def write_report(out: Path, run: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``records`` into ``out/results.json`` (records of earlier runs into the same
    folder are kept; a record of the same experiment is replaced) and redraw ``index.md``
    and ``index.html`` from all of them. Returns the merged records."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for rec in records:
        fig = _metrics_plot(out, rec) if rec.get("status") == "ok" else None
        if fig:
            rec["figures"] = [fig]
    run, merged = merge_results(out, run, records)
    md = _markdown(run, merged)
    atomic_write(out / "index.md", md)
    atomic_write(out / "index.html", _html(md))
    return merged
