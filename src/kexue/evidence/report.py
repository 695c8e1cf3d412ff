"""The evidence report: a summary page of every technique and a page per experiment, in
Markdown (for GitHub) and HTML (Jinja2 templates, for a browser or GitHub Pages).

Layout of a report folder::

    results.json          every record (see :mod:`kexue.evidence.records`)
    index.md / .html      the summary: the 34 techniques, fidelity, verdict, the numbers the
                          verdict was decided on (ours beside the post's), time
    <experiment>/index.md / .html   claim, settings, checks, metrics, tables, plots,
                          samples, provenance; its PNGs sit beside it

Everything is referenced relatively, so the folder can be moved or published as is. The
records are only formatted here, so ``kexue report DIR`` can redraw a folder from its
``results.json`` alone.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markdown_it import MarkdownIt

from kexue.evidence.cache import atomic_write
from kexue.evidence.records import merge_results, safe_name
from kexue.evidence.stats import fmt, format_stat

__all__ = ["deciding_numbers", "summary_table", "write_report"]

VERDICT_ICON = {"reproduced": "✅", "not reproduced": "❌", "inconclusive": "➖",
                "measured": "📏", "skipped": "⏭", "error": "⚠"}
VERDICT_ORDER = ["reproduced", "not reproduced", "inconclusive", "measured", "skipped", "error"]
# text symbols for HTML: emoji are missing from many fonts (headless browsers, servers)
HTML_ICON = {"reproduced": "✓", "not reproduced": "✗", "inconclusive": "≈", "measured": "·",
             "skipped": "–", "error": "!"}


# ----------------------------------------------------------------------------- numbers


def _stat(m: dict[str, Any]) -> str:
    return format_stat(m["mean"], m["std"] if m.get("n", 1) > 1 else None)


def deciding_numbers(rec: dict[str, Any], limit: int = 4) -> list[dict[str, str]]:
    """The metrics the verdict was decided on (those its checks name, in order), each with
    ours (mean ± std over seeds) and the post's number where the claim gives one."""
    metrics = rec.get("metrics") or {}
    names: list[str] = []
    for check in rec.get("checks") or []:
        names += [m for m in check.get("metrics", []) if m in metrics and m not in names]
    if not names:
        names = list(metrics)[:limit]
    reported = (rec.get("claim") or {}).get("reported_values") or {}
    return [{"metric": n, "ours": _stat(metrics[n]),
             "post": fmt(reported[n]) if n in reported else ""} for n in names[:limit]]


def _numbers_text(rec: dict[str, Any]) -> str:
    parts = []
    for d in deciding_numbers(rec):
        parts.append(f"{d['metric']} {d['ours']}" + (f" (post {d['post']})" if d["post"] else ""))
    return "; ".join(parts)


def _minutes(rec: dict[str, Any]) -> str:
    if "wall_time" not in rec:
        return "-"
    s = rec["wall_time"]
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def summary_table(records: list[dict[str, Any]]) -> str:
    """A plain-text table for the terminal: one line per experiment."""
    rows = [("experiment", "verdict", "time", "deciding numbers (ours, post)")]
    for r in records:
        rows.append((r["name"], r["verdict"], _minutes(r),
                     _numbers_text(r) if r.get("status") == "ok" else r.get("reason", "")))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])
        if j == 0:
            lines.append("-" * min(120, sum(widths) + 6 + len(row[3])))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- model


def _technique_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per technique of the catalogue (and per unknown one a record names)."""
    from kexue.evidence.catalogue import TECHNIQUES

    by_technique: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        for t in r.get("techniques", []):
            by_technique.setdefault(t, []).append(r)
    known = [t.id for t in TECHNIQUES]
    rows = [{"id": t.id, "name": t.name, "posts": t.posts,
             "records": by_technique.get(t.id, [])} for t in TECHNIQUES]
    rows += [{"id": t, "name": "", "posts": (), "records": rs}
             for t, rs in by_technique.items() if t not in known]
    return rows


def _counts(records: list[dict[str, Any]]) -> dict[str, int]:
    counts = {v: 0 for v in VERDICT_ORDER}
    for r in records:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return {k: v for k, v in counts.items() if v}


def _metric_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    reported = (rec.get("claim") or {}).get("reported_values") or {}
    deciding = {d["metric"] for d in deciding_numbers(rec, limit=100)}
    rows = []
    for name, m in (rec.get("metrics") or {}).items():
        rows.append({"name": name, "stat": _stat(m), "values": [fmt(v) for v in m["values"]],
                     "post": fmt(reported[name]) if name in reported else "",
                     "deciding": name in deciding})
    rows.sort(key=lambda r: not r["deciding"])  # the deciding metrics first
    return rows


# ----------------------------------------------------------------------------- Markdown


def _md_summary(run: dict[str, Any], records: list[dict[str, Any]]) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in _counts(records).items())
    lines = ["# kexue evidence report", "",
             f"{len(records)} experiments ({counts}); scale **{run.get('scale', '?')}**"
             + (f", commit `{run['commit']}`" if run.get("commit") else "") + ".", "",
             ("| T | technique | experiment | fidelity | verdict | deciding numbers: ours (post) "
             "| time |"), "|---|---|---|---|---|---|---|"]
    for row in _technique_rows(records):
        if not row["records"]:
            lines.append(f"| {row['id']} | {row['name']} | — | | no experiment | | |")
        for r in row["records"]:
            fidelity = (r.get("claim") or {}).get("fidelity", "")
            numbers = _numbers_text(r) if r.get("status") == "ok" else r.get("reason", "")
            lines.append(f"| {row['id']} | {row['name']} | [{r['name']}]({r['name']}/index.md) "
                         f"| {fidelity} | {VERDICT_ICON.get(r['verdict'], '')} {r['verdict']} "
                         f"| {numbers.replace('|', '/')} | {_minutes(r)} |")
    lines += ["", ("A verdict is computed from the run's own measurements: *reproduced* when "
              "every check holds beyond seed noise (95% Student-t intervals, paired over seeds "
              "where arms share them), *not reproduced* when a check fails after Holm's "
              "correction across the checks, *inconclusive* otherwise; *measured* when the post "
              "states no numerical claim (the measurements are reported without a verdict). "
              "A *substituted* "
              "fidelity means our setting differs in kind from the post's: the verdict is "
              "about our setting."), "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items())]
    return "\n".join(lines) + "\n"


def _md_experiment(rec: dict[str, Any]) -> str:
    c = rec.get("claim") or {}
    lines = [f"# {rec['name']}", "", "[← all experiments](../index.md)", "",
             (f"*{c.get('post', '')}* ({c.get('date', '')}, <{c.get('url', '')}>), "
             f"techniques {', '.join(rec.get('techniques', []))}."), "",
             f"**Verdict: {VERDICT_ICON.get(rec['verdict'], '')} {rec['verdict']}**"
             + (f" — {rec['reason']}" if rec.get("reason") else "")
             + (" (cached)" if rec.get("cached") else ""), "",
             f"**Claim.** {c.get('statement', '')}", "",
             f"**Reproduced if.** {c.get('condition', '')}", ""]
    if c.get("fidelity"):
        lines += [f"**Fidelity: {c['fidelity']}.**"
                  + (f" {c['substitution']}" if c.get("substitution") else ""), ""]
    for label, key in (("The post's setting", "post_setting"), ("Ours", "our_setting"),
                       ("The post reports", "reported")):
        if c.get(key):
            lines += [f"**{label}.** {c[key]}", ""]
    if rec.get("checks"):
        lines += ["## Checks", ""]
        lines += [f"- {'✔' if ch['holds'] else ('✘' if ch['holds'] is False else '?')} "
                  f"{ch['description']}: {ch['detail']}" for ch in rec["checks"]]
        lines.append("")
    metric_rows = _metric_rows(rec)
    if metric_rows:
        seeds = rec.get("seeds", [])
        lines += ["## Metrics", "", "| metric | ours | post | "
                  + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "|---|---|---|" + "---|" * len(seeds)]
        for m in metric_rows:
            name = f"**{m['name']}**" if m["deciding"] else m["name"]
            lines.append(f"| {name} | {m['stat']} | {m['post']} | " + " | ".join(m["values"])
                         + " |")
        lines.append("")
    for table in rec.get("tables", []):
        lines += [table, ""]
    for fig in rec.get("figures", []):
        lines += [f"![{fig}]({fig})", ""]
    if rec.get("samples"):
        lines += ["## Samples", "", "```"] + rec["samples"] + ["```", ""]
    for note in rec.get("notes", []):
        lines += [f"> {note}", ""]
    lines += ["## Provenance", ""] + [f"- {k}: {v}" for k, v in _provenance(rec).items()]
    return "\n".join(lines) + "\n"


def _provenance(rec: dict[str, Any]) -> dict[str, str]:
    out = {"scale": rec.get("scale", ""), "seeds": ", ".join(map(str, rec.get("seeds", []))),
           "wall time": _minutes(rec)}
    if rec.get("model"):
        out["model"] = rec["model"]
    if rec.get("commit"):
        out["commit"] = rec["commit"]
    if rec.get("code_hash"):
        out["code hash"] = f"{rec['code_hash']} ({len(rec.get('modules', {}))} kexue modules)"
    for name, d in (rec.get("data") or {}).items():
        out[f"data {name}"] = f"{d.get('source', '')}; licence {d.get('licence', '')}"
    if rec.get("versions"):
        out["versions"] = ", ".join(f"{k} {v}" for k, v in rec["versions"].items())
    return out


# ----------------------------------------------------------------------------- HTML


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kexue.evidence", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = lambda text: jinja2.filters.Markup(_markdown().render(text or ""))
    env.filters["md_inline"] = lambda text: jinja2.filters.Markup(
        _markdown().renderInline(text or ""))
    env.globals.update(icon=HTML_ICON, numbers=deciding_numbers, minutes=_minutes,
                       provenance=_provenance, metric_rows=_metric_rows)
    return env


def _html_summary(run: dict[str, Any], records: list[dict[str, Any]]) -> str:
    return _templates().get_template("summary.html.j2").render(
        run=run, records=records, rows=_technique_rows(records), counts=_counts(records),
        verdicts=VERDICT_ORDER)


def _html_experiment(rec: dict[str, Any]) -> str:
    return _templates().get_template("experiment.html.j2").render(rec=rec)


def write_report(out: Path, run: dict[str, Any], records: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """Merge ``records`` into ``out/results.json`` (records of earlier runs into the same
    folder are kept; one of the same experiment is replaced) and redraw every page from
    the merged records. Returns them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run, merged = merge_results(out, run, records)
    for rec in merged:
        folder = out / safe_name(rec["name"])
        folder.mkdir(exist_ok=True)
        atomic_write(folder / "index.md", _md_experiment(rec))
        atomic_write(folder / "index.html", _html_experiment(rec))
    atomic_write(out / "index.md", _md_summary(run, merged))
    atomic_write(out / "index.html", _html_summary(run, merged))
    return merged
