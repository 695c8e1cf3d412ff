import math

import numpy as np
import pytest

from kexue.evidence import verdict
from kexue.evidence.base import Context, Stat, Stats
from kexue.evidence.suite import _aggregate
from kexue.experiments.infomap import Infomap, compare_on_graph, word_clusters

pytest.importorskip("infomap")
pytest.importorskip("sklearn")


def stats_for(nmi, peer_nmi, gap, seeds=(0.0, 0.001, -0.001)):
    """Synthetic metrics over three seeds for every graph the checks look at."""
    stats = Stats()
    for g in ("lfr-1000", "lfr-10000", "football", "polbooks"):
        stats[f"{g}/nmi"] = Stat([nmi[g] + d for d in seeds])
        stats[f"{g}/peer_nmi"] = Stat([peer_nmi[g] + d for d in seeds])
        stats[f"{g}/codelength_gap_pct"] = Stat([gap[g] + d for d in seeds])
    return stats


GOOD = {"lfr-1000": 1.0, "lfr-10000": 0.99, "football": 0.92, "polbooks": 0.54}
NO_GAP = dict.fromkeys(GOOD, 0.0)


def test_verdict_reproduced_when_kexue_matches_the_package():
    assert verdict(Infomap().checks(stats_for(GOOD, GOOD, NO_GAP))) == "reproduced"


@pytest.mark.parametrize("change", ["longer code", "worse nmi", "no communities"])
def test_verdict_not_reproduced_when_the_claim_fails(change):
    nmi, gap = dict(GOOD), dict(NO_GAP)
    if change == "longer code":
        gap["lfr-10000"] = 3.0
    elif change == "worse nmi":
        nmi["football"] = 0.8
    else:  # one module: NMI 0 on LFR, as for the package
        nmi["lfr-1000"] = 0.0
    peer = GOOD if change != "no communities" else {**GOOD, "lfr-1000": 0.0}
    assert verdict(Infomap().checks(stats_for(nmi, peer, gap))) == "not reproduced"


def test_compare_on_graph_scores_a_planted_partition():
    blocks = np.repeat(np.arange(4), 10)
    rng = np.random.default_rng(0)
    i, j = np.triu_indices(40, 1)
    keep = rng.random(len(i)) < np.where(blocks[i] == blocks[j], 0.7, 0.02)
    row = compare_on_graph(np.column_stack([i[keep], j[keep]]), blocks, trials=3, seed=0)
    assert row["nmi"] == pytest.approx(1.0) and row["peer_nmi"] == pytest.approx(1.0)
    assert abs(row["codelength_gap_pct"]) < 1e-9
    assert row["modules"] == row["peer_modules"] == 4


def test_word_clusters_group_by_topic():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3
    vectors = np.repeat(centres, 15, axis=0) + rng.normal(size=(45, 16))
    result, links = word_clusters([f"w{i}" for i in range(45)], vectors, seed=0)
    assert result.num_modules == 3 and links > 0
    assert len({tuple(sorted(result.modules[k * 15:(k + 1) * 15])) for k in range(3)}) == 3


def test_smoke_run_gives_finite_metrics_a_figure_tables_and_checks(tmp_path):
    exp = Infomap()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert {"lfr-300/nmi", "football/peer_nmi", "polbooks/codelength_gap_pct"} <= set(run.metrics)
    stats = _aggregate([run], False)
    extra = exp.summarize(stats, [run], ctx)
    assert (tmp_path / extra.figures[0]).exists() and len(extra.tables) == 2
    checks = exp.checks(stats)
    assert len(checks) == 5 and all(c.holds is None for c in checks)  # one seed: undecided
