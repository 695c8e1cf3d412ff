"""InfoMap: kexue.graph.infomap vs the infomap package (C++ core, 2.x) on LFR graphs.

Both search a two-level partition with one trial from the same undirected edge list
(self-links dropped), in the same process, alternating inside every repeat; times are
end to end from the edge list (kexue: flow + search; infomap: its Python adapter +
network build + flow + search), and the package's own ``elapsed_time`` (C++ only) is
reported beside them. Quality over several seeds: codelength (bits) and NMI against
the planted communities; agreement: kexue's map equation of the package's partition
against the codelength the package reports for it.

Graphs: ``kexue.graph.lfr_graph`` (networkx LFR, tau1 2.5, tau2 1.5, mean degree 15,
max degree 50, communities of 20-100 nodes, mixing mu, seed 1).

Run: python benchmarks/graph.py [--quick]   (writes benchmarks/results/graph.json)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _timing import alternate, medians, ratio

from kexue.graph import LFR_PARAMETERS, infomap, lfr_graph, map_equation

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "graph.json"
CASES = {"lfr-1000": (1000, 0.2), "lfr-10000": (10_000, 0.2), "lfr-1000-mu0.4": (1000, 0.4)}


def _peer(links, seed):
    import infomap as peer

    return peer.run(links, two_level=True, num_trials=1, seed=seed)


def _peer_modules(result, n):
    modules = result.modules()
    return np.array([modules[i] for i in range(n)])


def _quality(edges, truth, seeds):
    """Per seed: codelength and NMI of both, NMI between them, map-equation agreement."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    n = len(truth)
    links = [tuple(e) for e in edges.tolist()]
    rows = []
    for seed in seeds:
        ours = infomap(edges, num_nodes=n, seed=seed)
        theirs = _peer(links, seed + 1)  # infomap seeds start at 1
        their_modules = _peer_modules(theirs, n)
        rows.append({
            "kexue_codelength": ours.codelength,
            "peer_codelength": theirs.codelength,
            "kexue_nmi": nmi(truth, ours.modules),
            "peer_nmi": nmi(truth, their_modules),
            "nmi_kexue_vs_peer": nmi(their_modules, ours.modules),
            "kexue_modules": ours.num_modules,
            "peer_modules": theirs.num_top_modules,
            "peer_elapsed_s": theirs.elapsed_time,
            "map_equation_abs_diff": abs(map_equation(edges, their_modules, num_nodes=n)
                                         - theirs.codelength),
        })
    return rows


def _case(n, mu, repeats, seeds):
    t0 = time.perf_counter()
    edges, truth = lfr_graph(n, mu=mu, seed=1)
    generate_s = time.perf_counter() - t0
    links = [tuple(e) for e in edges.tolist()]
    times = alternate({"kexue": lambda: infomap(edges, num_nodes=n, seed=0),
                       "peer": lambda: _peer(links, 1)}, repeats, warmup=2)
    rows = _quality(edges, truth, seeds)
    mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    return {
        "nodes": n, "edges": len(edges), "mu": mu, "communities": int(truth.max()) + 1,
        "generate_s": generate_s,
        "kexue_s": medians(times)["kexue"], "peer_s": medians(times)["peer"],
        "peer_core_s": mean["peer_elapsed_s"],
        "time_ratio": ratio(times, "kexue", "peer"),  # kexue / peer end to end
        "time_ratio_vs_core": medians(times)["kexue"] / mean["peer_elapsed_s"],
        "codelength_gap_pct": 100 * (mean["kexue_codelength"] / mean["peer_codelength"] - 1),
        "max_map_equation_abs_diff": max(r["map_equation_abs_diff"] for r in rows),
        "mean": mean,
        "seeds": rows,
    }


def main(out_path: str | Path | None = None, quick: bool = False) -> dict:
    torch.set_num_threads(2)
    repeats, seeds = (3, range(2)) if quick else (7, range(5))
    cases = {k: v for k, v in CASES.items() if not quick or v[0] <= 1000}
    results = {}
    print(f"{'case':16s} {'kexue s':>8s} {'peer s':>8s} {'core s':>8s} {'ratio':>6s} "
          f"{'L kexue':>8s} {'L peer':>8s} {'gap %':>7s} {'NMI k':>6s} {'NMI p':>6s}")
    for name, (n, mu) in cases.items():
        row = _case(n, mu, repeats, seeds)
        results[name] = row
        m = row["mean"]
        print(f"{name:16s} {row['kexue_s']:8.3f} {row['peer_s']:8.3f} {row['peer_core_s']:8.3f} "
              f"{row['time_ratio']:6.2f} {m['kexue_codelength']:8.4f} {m['peer_codelength']:8.4f} "
              f"{row['codelength_gap_pct']:7.3f} {m['kexue_nmi']:6.3f} {m['peer_nmi']:6.3f}",
              flush=True)
    import infomap as peer

    out = {
        "benchmark": "graph",
        "peer": f"infomap {peer.__version__}",
        "quick": quick,
        "repeats": repeats,
        "seeds": list(seeds),
        "lfr": {**LFR_PARAMETERS, "graph_seed": 1},
        "headline": "time_ratio = median over repeats of kexue / infomap-package time, end to "
                    "end from the edge list (< 1: kexue faster); codelength gap and NMI are "
                    "means over seeds",
        "targets": {"codelength_gap_pct": 0.5, "nmi": 0.99, "time_ratio": 5.0},
        "cases": results,
    }
    out_path = Path(out_path) if out_path is not None else DEFAULT_OUT
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1))
    print(f"wrote {out_path}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 1000 only, fewer repeats")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    main(args.out, quick=args.quick)
    sys.exit(0)
