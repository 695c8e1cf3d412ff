"""Run every benchmark in this folder (`make bench`); each writes benchmarks/results/<name>.json.

Usage: python benchmarks/run.py [NAMES...] [--quick]
Benchmarks run one after another (never two at once on a 2-core machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> dict[str, Path]:
    return {p.stem: p for p in sorted(HERE.glob("*.py")) if p.stem not in {"run", "__init__"}
            and not p.stem.startswith("_")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    args = parser.parse_args(argv)
    found = discover()
    unknown = [n for n in args.names if n not in found]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(found)}",
              file=sys.stderr)
        return 2
    (HERE / "results").mkdir(exist_ok=True)
    summary = {}
    for name in args.names or list(found):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", found[name])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        kwargs = {"out_path": HERE / "results" / f"{name}.json"}
        if args.quick and "quick" in inspect.signature(module.main).parameters:
            kwargs["quick"] = True
        print(f"== {name}", flush=True)
        t0 = time.time()
        summary[name] = {"result": module.main(**kwargs), "seconds": round(time.time() - t0, 1)}
    (HERE / "results" / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"wrote {HERE / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
