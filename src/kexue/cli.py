"""The ``kexue`` command: list, reproduce and report experiments; list and fetch data; train
a model of your own (``kexue train similarity|classify``).

Exit codes of ``kexue reproduce`` (and ``kexue demo``): 0 every requested experiment ran;
1 an experiment failed with an error; 2 bad input (unknown names, ``--seeds 0``, an
unwritable ``--out``, a missing data root), reported in one line on stderr; 3 nothing failed
but an experiment was skipped (missing data or model; the report says how to get it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kexue.evidence.base import SCALES

START, END = "<!-- techniques:start -->", "<!-- techniques:end -->"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3
# `kexue demo` / `make demo`: quick experiments that together take about 5 minutes on 2 cores
# about five minutes on 2 cores, bundled data only (a fresh clone or wheel runs it): sentence
# embeddings on the pretrained MiniLM, GAN dynamics, community detection, a theorem on
# trained networks and a closed-form physics result
DEMO = ("whitening", "gan-dynamics", "infomap", "gp-inequality", "jump-rope")
SCALE_HELP = ("quick: minutes on a 2-core CPU (the committed evidence); full: the larger "
              "setting for a GPU")


def _cmd_list(args: argparse.Namespace) -> int:
    from kexue.evidence.registry import load_all
    from kexue.evidence.suite import measured_minutes

    measured = measured_minutes()
    for name, exp in load_all().items():
        minutes = exp.minutes.get(args.scale, "?")
        last = measured.get((name, args.scale))
        here = f" (last run here {last:.1f})" if last is not None else ""
        data = f" [data: {', '.join(exp.datasets)}]" if exp.datasets else ""
        print(f"{name:28s} {' '.join(exp.techniques):10s} ~{minutes} min{here}  "
              f"{exp.claim.post} ({exp.claim.date}){data}")
    return EXIT_OK


def _exit_code(records: list[dict]) -> int:
    if any(r["status"] == "error" for r in records):
        return EXIT_ERROR
    return EXIT_SKIPPED if any(r["status"] == "skipped" for r in records) else EXIT_OK


def _run(names: list[str] | None, args: argparse.Namespace, out: Path | None) -> int:
    from kexue.evidence.registry import resolve
    from kexue.evidence.report import summary_table
    from kexue.evidence.suite import reproduce

    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    experiments = resolve(names)
    out, records = reproduce(experiments, args.scale, args.seeds, out,
                             use_cache=not args.no_cache,
                             model=Path(args.model) if args.model else None)
    print()
    print(summary_table(records))
    print(f"\nreport: {out / 'index.html'} (and index.md, results.json)")
    skipped = [r for r in records if r["status"] == "skipped"]
    for r in skipped:
        print(f"skipped {r['name']}: {r['reason']}")
    return _exit_code(records)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    return _run(args.names, args, Path(args.out) if args.out else None)


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    t0 = time.time()
    code = _run(list(DEMO), args, Path(args.out))
    print(f"demo: {len(DEMO)} experiments in {time.time() - t0:.0f} s")
    return code


def _cmd_report(args: argparse.Namespace) -> int:
    from kexue.evidence.records import load_results
    from kexue.evidence.report import summary_table, write_report

    run, records = load_results(Path(args.dir))
    write_report(Path(args.dir), run, records)
    print(summary_table(records))
    print(f"\nreport: {Path(args.dir) / 'index.html'}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from kexue import data

    if args.action not in ("list", "get"):
        raise ValueError(f"unknown action {args.action!r}: expected `kexue data` or "
                         "`kexue data get NAME`")
    if args.action == "get":
        if not args.names:
            raise ValueError("kexue data get needs a data set name; see `kexue data`")
        for name in args.names:
            root = data.get(name, root=args.root, base_url=args.mirror)
            print(f"{name}: ready under {root}")
        return EXIT_OK
    if args.names:
        raise ValueError(f"unexpected arguments {args.names}; expected `kexue data get NAME`")
    rows = data.describe()
    print(f"{'data set':22s} {'present':8s} {'size':>9s}  {'kind':12s} licence / source")
    for r in rows:
        size = f"{r['size'] / 1e6:.1f} MB" if r["size"] else "-"
        kind = "bundled" if r["redistributable"] else "research-use"
        print(f"{r['name']:22s} {'yes' if r['present'] else 'NO':8s} {size:>9s}  "
              f"{kind:12s} {r['licence']} / {r['source']}")
    missing = [r["name"] for r in rows if not r["present"]]
    if missing:
        print(f"\nnot found: {', '.join(missing)}. Download one with `kexue data get NAME` "
              f"(into {data.user_data_dir()}), or set KEXUE_DATA to a folder holding them.")
    return EXIT_OK


def _newest_report() -> Path | None:
    reports = sorted(Path("reports").glob("*/results.json"), key=lambda p: p.stat().st_mtime)
    return reports[-1].parent if reports else None


def _verdict_cell(record: dict) -> str:
    """``not reproduced (substituted)``: the verdict with the setting it is about."""
    fidelity = record.get("claim", {}).get("fidelity")
    return f"{record['verdict']} ({fidelity})" if fidelity else record["verdict"]


def technique_table(reports: list[Path]) -> str:
    """The Markdown table of all techniques with status and latest verdict.

    Verdicts come from the ``reports`` folders in order; a later folder wins."""
    from kexue.evidence.catalogue import TECHNIQUES
    from kexue.evidence.records import load_results
    from kexue.evidence.registry import load_all

    verdicts: dict[str, str] = {}
    for report in reports:
        _, records = load_results(report)
        verdicts.update({r["name"]: _verdict_cell(r) for r in records})
    experiments = load_all()
    lines = ["| T | technique | posts | status | experiment: latest verdict (fidelity) |",
             "|---|---|---|---|---|"]
    for t in TECHNIQUES:
        exps = [e for e in experiments.values() if t.id in e.techniques]
        cells = [f"`{e.name}`: {verdicts.get(e.name, 'not run')}" for e in exps]
        status = "implemented" if t.implemented() else "planned"
        posts = ", ".join(f"[{p}](https://kexue.fm/archives/{p})" for p in t.posts)
        lines.append(f"| {t.id} | {t.name} | {posts} | {status} | {'; '.join(cells) or '—'} |")
    source = (f"verdicts from {', '.join(f'`{r}`' for r in reports)}" if reports
              else "no report found")
    return "\n".join(lines) + f"\n\n<sub>Generated by `kexue readme` ({source}).</sub>"


def _cmd_readme(args: argparse.Namespace) -> int:
    readme = Path(args.readme)
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} markers")
    newest = _newest_report()
    reports = [Path(r) for r in args.report] if args.report else ([newest] if newest else [])
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + technique_table(reports) + "\n" + END + tail,
                      encoding="utf-8")
    print(f"updated {readme}" + (f" with verdicts from {len(reports)} report(s)" if reports else ""))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from kexue.recipes import RecipeConfig, train

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    config = RecipeConfig(
        task=args.task, data=args.data, valid=args.valid, model=args.model, out=args.out,
        loss=args.loss, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        warmup=args.warmup, max_length=args.max_length, pooling=args.pooling, fgm=args.fgm,
        gp=args.gp, vat=args.vat, flooding=args.flooding, recompute=args.recompute,
        whitening=args.whitening, seed=args.seed, resume=args.resume)
    summary = train(config)
    best = summary.get("best")
    if best:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in best.items() if k != "epoch")
        print(f"best epoch {best['epoch']}: valid {shown}")
    print(f"model: {config.out} ({summary['seconds']:.0f} s; summary.json there)")
    return EXIT_OK


def _add_train_parser(sub) -> None:
    from kexue.recipes import LOSSES, TASKS

    s = sub.add_parser(
        "train", help="fine-tune a BERT folder on your own TSV with the posts' techniques",
        description="Fine-tune a local BERT folder on a TSV of your own. similarity: lines "
                    "'sentence_a<TAB>sentence_b<TAB>score' (a sentence encoder); classify: "
                    "lines 'text<TAB>label' (a class id; comma-separated ids with --loss "
                    "multilabel). The best epoch on --valid is kept in --out, which "
                    "kexue.embed.SentenceEncoder, transformers and (similarity) "
                    "sentence-transformers load.")
    s.add_argument("task", choices=TASKS)
    s.add_argument("--data", required=True, metavar="TSV", help="training examples")
    s.add_argument("--valid", default=None, metavar="TSV",
                   help="validation examples, scored after every epoch (the best is kept)")
    s.add_argument("--model", default=None, metavar="FOLDER",
                   help="a local Hugging Face BERT folder (default: all-MiniLM-L6-v2)")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: the model, checkpoints, metrics.jsonl, summary.json")
    s.add_argument("--loss", default=None, choices=[x for v in LOSSES.values() for x in v],
                   help="similarity: cosent (default), sbert, cosine-mse; classify: "
                        "cross-entropy (default), focal, multilabel, logit-adjusted")
    s.add_argument("--epochs", type=float, default=1.0)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--lr", type=float, default=2e-5)
    s.add_argument("--warmup", type=float, default=0.1,
                   help="warm-up: a fraction of the steps, or a number of steps")
    s.add_argument("--max-length", type=int, default=None,
                   help="tokens per text (default: the model folder's)")
    s.add_argument("--pooling", default="mean",
                   choices=("cls", "mean", "first-last-avg", "last-2-avg", "pooler"),
                   help="similarity: sentence-vector pooling (default mean)")
    step = s.add_mutually_exclusive_group()
    step.add_argument("--fgm", type=float, default=None, metavar="EPS",
                      help="FGM adversarial training on the embeddings (post 7234; 0.5)")
    step.add_argument("--gp", type=float, default=None, metavar="EPS",
                      help="gradient penalty on the embeddings (post 7234; 1)")
    step.add_argument("--vat", type=float, default=None, metavar="EPS",
                      help="virtual adversarial training (post 7466; 1)")
    s.add_argument("--flooding", type=float, default=None, metavar="B",
                   help="flooding at level B (post 7643)")
    s.add_argument("--recompute", action="store_true",
                   help="recompute activations in the backward pass (less memory)")
    s.add_argument("--whitening", type=int, default=None, metavar="N",
                   help="similarity: BERT-whitening to N dimensions after training (post 8069)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out")
    s.add_argument("--threads", type=int, default=None,
                   help="intra-op threads for torch (default: torch's own)")
    s.set_defaults(fn=_cmd_train)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kexue", description=__doc__.splitlines()[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list the registered experiments")
    s.add_argument("--scale", choices=SCALES, default="quick", help=SCALE_HELP)
    s.set_defaults(fn=_cmd_list)

    def run_options(s: argparse.ArgumentParser) -> None:
        s.add_argument("--scale", choices=SCALES, default="quick", help=SCALE_HELP)
        s.add_argument("--seeds", type=int, default=None,
                       help="seeds per experiment (default: its own)")
        s.add_argument("--no-cache", action="store_true",
                       help="ignore and do not write the cache")
        s.add_argument("--model", default=None, metavar="PATH",
                       help="a local Hugging Face BERT folder for the experiments that "
                            "fine-tune a pretrained encoder (default: all-MiniLM-L6-v2)")
        s.add_argument("--threads", type=int, default=None,
                       help="intra-op threads for torch (default: torch's own, one per core)")

    s = sub.add_parser("reproduce", help="run experiments and write a report",
                       epilog=__doc__.split("\n\n", 1)[1])
    s.add_argument("names", nargs="*",
                   help="experiment names or technique numbers such as T12 (default: all)")
    run_options(s)
    s.add_argument("--out", default=None, help="report folder (default: reports/<timestamp>)")
    s.set_defaults(fn=_cmd_reproduce)

    s = sub.add_parser("demo", help=f"run a five-minute demo ({', '.join(DEMO)})")
    run_options(s)
    s.add_argument("--out", default="reports/demo", help="report folder (default: reports/demo)")
    s.set_defaults(fn=_cmd_demo)

    s = sub.add_parser("report", help="redraw a report folder from its results.json")
    s.add_argument("dir")
    s.set_defaults(fn=_cmd_report)

    s = sub.add_parser("data", help="list the data sets (`kexue data`) or download one "
                                    "(`kexue data get NAME`)")
    s.add_argument("action", nargs="?", default="list", help="list (default) or get")
    s.add_argument("names", nargs="*", help="data sets to download (with get)")
    s.add_argument("--root", default=None, help="download into this folder instead of the "
                                                "user data cache")
    s.add_argument("--mirror", default=None, help="base URL of a mirror with the data layout "
                                                  "(default: $KEXUE_DATA_MIRROR, else upstream)")
    s.set_defaults(fn=_cmd_data)

    _add_train_parser(sub)

    s = sub.add_parser("readme", help="regenerate the technique table in README.md")
    s.add_argument("--readme", default="README.md")
    s.add_argument("--report", action="append", default=None,
                   help="report folder for verdicts; repeat to merge, later wins (default: newest)")
    s.set_defaults(fn=_cmd_readme)
    return p


def main(argv: list[str] | None = None) -> int:
    from kexue.data import DownloadError
    from kexue.evidence.records import RecordError
    from kexue.evidence.registry import UnknownExperiment

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (UnknownExperiment, ValueError, FileNotFoundError, PermissionError, RecordError,
            DownloadError) as e:
        print(f"kexue: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kexue: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
