"""The paired statistics of the reproductions page (unmask.bench.statistics.sign_test,
paired_comparison) and benchmarks/reproductions.py on a tiny hand-made store with known
answers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from unmask.bench.statistics import paired_comparison, sign_test
from unmask.bench.store import ResultRecord, Store, UnitRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import reproductions as rp  # noqa: E402


@pytest.mark.parametrize("wins,losses", [(0, 0), (6, 0), (0, 6), (5, 0), (3, 3), (9, 2), (1, 14)])
def test_sign_test_matches_scipy(wins, losses):
    expected = 1.0 if wins + losses == 0 else binomtest(wins, wins + losses, 0.5).pvalue
    assert sign_test(wins, losses) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_sign_test_refuses_non_counts(bad):
    with pytest.raises(ValueError, match="wins"):
        sign_test(bad, 2)


def test_paired_comparison_known_answers():
    # lower is better: a beats b on images 0 and 2 (by 0.1 and 0.3), ties on 1, loses on 3
    a, b = [0.1, 0.5, 0.2, 0.9], [0.2, 0.5, 0.5, 0.7]
    r = paired_comparison(a, b, higher_is_better=False)
    assert (r.n, r.wins, r.losses, r.ties) == (4, 2, 1, 1)
    assert r.mean_diff == pytest.approx((0.1 + 0.0 + 0.3 - 0.2) / 4)
    assert (r.mean_a, r.median_b) == (pytest.approx(0.425), pytest.approx(0.5))
    assert r.p_sign == pytest.approx(1.0)  # 2 : 1 -> 2 * (1 + 3) / 8 = 1
    lo, hi = r.ci95
    assert -0.2 <= lo <= r.mean_diff <= hi <= 0.3
    # higher is better flips the orientation
    flipped = paired_comparison(a, b, higher_is_better=True)
    assert (flipped.wins, flipped.losses) == (1, 2)
    assert flipped.mean_diff == pytest.approx(-r.mean_diff)
    # a constant difference has a zero-width interval
    c = paired_comparison([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], higher_is_better=False)
    assert c.ci95 == (pytest.approx(0.5), pytest.approx(0.5))


def test_paired_comparison_checks_its_input():
    with pytest.raises(ValueError, match="a, b"):
        paired_comparison([1.0, 2.0], [1.0], higher_is_better=True)
    with pytest.raises(ValueError, match="finite"):
        paired_comparison([1.0, math.nan], [1.0, 2.0], higher_is_better=True)
    empty = paired_comparison([], [], higher_is_better=True)
    assert empty.n == 0 and math.isnan(empty.mean_diff) and empty.p_sign == 1.0


def _paired(diffs, higher=True):
    """Pairs whose oriented differences are ``diffs``."""
    b = np.zeros(len(diffs))
    a = b + np.asarray(diffs) if higher else b - np.asarray(diffs)
    return paired_comparison(a.tolist(), b.tolist(), higher_is_better=higher)


def test_verdict_rule():
    assert rp.verdict(_paired([0.1] * 8)) == "supported"
    assert rp.verdict(_paired([0.1] * 8, higher=False)) == "supported"
    assert rp.verdict(_paired([-0.1] * 8)) == "not supported"
    assert rp.verdict(_paired([0.1] * 5)) == "inconclusive"  # fewer than MIN_PAIRS
    assert rp.verdict(_paired([0.1, -0.1] * 5)) == "inconclusive"
    # interval above 0 from one large win, but 5 wins : 4 losses -> sign test not significant
    assert rp.verdict(_paired([5.0, 0.1, 0.1, 0.1, 0.1, -0.01, -0.01, -0.01, -0.01])) == (
        "inconclusive"
    )
    on_par = _paired([0.01, -0.01] * 6)
    assert rp.verdict(on_par, "on par") == "supported"
    assert rp.verdict(_paired([0.2] * 8), "on par") == "not supported"
    assert rp.verdict(_paired([0.2, -0.19] * 4), "on par") == "inconclusive"
    with pytest.raises(ValueError, match="relation"):
        rp.verdict(on_par, "worse")


FILES = [f"img{i}.png" for i in range(8)]


def _store(tmp_path: Path) -> Store:
    """sp / sp-g with deletion_rise and the saliency metric at every alpha; cwox / gradcam with
    CAUC pairs."""
    sm = [rp._alpha_label(a) for a in rp._SM_ALPHAS]
    config = {
        "name": "t",
        "methods": [{"label": r, "method": r} for r in ("sp", "sp-g", "cwox", "gradcam")],
        "metrics": [
            {"label": m, "metric": m.split("[")[0], "params": {}}
            for m in ["deletion_rise", *sm, "cauc[pixels_per_step=16]"]
        ],
    }
    st = Store.create_or_resume(tmp_path / "t.sqlite", config, "h")
    st.set_files(FILES)
    for i, f in enumerate(FILES):
        for run in ("sp", "sp-g"):
            dele = 0.2 + 0.01 * i + (0.0 if run == "sp" else -0.05 if i < 7 else 0.02)
            # sp is best at alpha 0.1 (value 0.3), sp-g at 0.9 (0.2); elsewhere 1.0
            best = {"sp": (0.1, 0.3), "sp-g": (0.9, 0.2)}[run]
            res = [ResultRecord("deletion_rise", None, "done", dele)]
            res += [
                ResultRecord(lab, None, "done", best[1] if a == best[0] else 1.0)
                for lab, a in zip(sm, rp._SM_ALPHAS, strict=True)
            ]
            st.write_unit(UnitRecord(f, run, "done", results=res))
        for run, val in (("cwox", 0.01), ("gradcam", 0.02)):
            pairs = [
                {
                    "level": "cluster",
                    "target": [1],
                    "competitors": [2],
                    "value": val,
                    "n_delta": 9,
                    "zero_map": False,
                },
                {
                    "level": "cluster",
                    "target": [2],
                    "competitors": [1],
                    "value": 3 * val,
                    "n_delta": 9,
                    "zero_map": run == "cwox" and i == 0,
                },
                {
                    "level": "class",
                    "target": [1],
                    "competitors": [3],
                    "value": val,
                    "n_delta": 9,
                    "zero_map": False,
                },
            ]
            res = [ResultRecord("cauc[pixels_per_step=16]", None, "done", val, {"pairs": pairs})]
            if i < 6:  # two images without pairs
                st.write_unit(UnitRecord(f, run, "done", results=res))
    return st


def test_claims_on_a_hand_made_store(tmp_path):
    st = _store(tmp_path)
    claims = [
        rp.Claim("001", "Table 3", "s", "deletion_rise", "sp-g", "sp", "x"),
        rp.Claim(
            "001", "Table 4", "s", "saliency_metric@alpha*", "sp-g", "sp", "x", kind="alpha_star"
        ),
        *(
            rp.Claim(
                "003",
                "c",
                store,
                "cauc[pixels_per_step=16]",
                "cwox",
                "gradcam",
                "x",
                kind="contrastive",
                level=level,
            )
            for store, level in (("s", "cluster"), ("s", "class"), ("missing", "class"))
        ),
    ]
    rows = rp.evaluate(claims, lambda name: st if name == "s" else None)
    dele, alpha, cluster, klass, missing = rows
    # deletion: sp-g lower on images 0-6, higher on 7 (lower is better)
    assert (dele["n"], dele["wins"], dele["losses"]) == (8, 7, 1)
    assert dele["mean_diff"] == pytest.approx((7 * 0.05 - 0.02) / 8)
    assert dele["p_sign"] == pytest.approx(binomtest(7, 8, 0.5).pvalue)
    assert dele["verdict"] == "inconclusive"  # p = 0.07
    # alpha*: chosen on images 0, 2, 4, 6; compared on 1, 3, 5, 7 at each run's own alpha
    assert alpha["alpha_star"] == "sp-g 0.9, sp 0.1"
    assert (alpha["n"], alpha["wins"]) == (4, 4)
    assert (alpha["mean_a"], alpha["mean_b"]) == (pytest.approx(0.2), pytest.approx(0.3))
    assert alpha["verdict"] == "inconclusive"  # 4 images
    # cluster pairs: image 0 has one pair both scored (the other cwox map is zero), images 1-5
    # two; per image the mean; images 6 and 7 have no pair
    assert (cluster["n"], cluster["pairs"], cluster["pair_wins"]) == (6, 11, 11)
    assert cluster["pairs_left_out"] == 1
    assert cluster["mean_a"] == pytest.approx((0.01 + 5 * 0.02) / 6)
    assert cluster["mean_b"] == pytest.approx((0.02 + 5 * 0.04) / 6)
    assert cluster["verdict"] == "supported"  # 6 of 6 images, interval above 0
    assert (klass["n"], klass["pairs"], klass["wins"]) == (6, 6, 6)
    assert (missing["n"], missing["verdict"]) == (0, "not run")


def test_ranking_and_page(tmp_path):
    st = _store(tmp_path)
    rank = rp.metric_ranking(st, ["deletion_rise"])
    assert rank["files"] == []  # cwox and gradcam have no deletion: no image is complete
    rows = rp.evaluate(
        [rp.Claim("001", "Table 3", "s", "deletion_rise", "sp-g", "sp", "0.1769 vs 0.1996")],
        lambda name: st,
    )
    page = tmp_path / "page.md"
    rp.write_page(page, rows, rank, rp.store_rows({}), "now")
    text = page.read_text()
    assert "| sp-g better than sp on deletion_rise | 0.1769 vs 0.1996 |" in text
    assert "No image has every metric" in text
    rp.write_csv(tmp_path / "claims.csv", rows)
    assert (tmp_path / "claims.csv").read_text().splitlines()[0].startswith("seed,source,claim")


def test_ranking_orders_the_methods(tmp_path):
    config = {
        "name": "r",
        "methods": [{"label": r, "method": r} for r in ("x", "y", "z")],
        "metrics": [{"label": m, "metric": m, "params": {}} for m in ("deletion", "insertion")],
    }
    st = Store.create_or_resume(tmp_path / "r.sqlite", config, "h")
    st.set_files(FILES[:3])
    # deletion (lower better): x < y < z; insertion (higher better): x > z > y
    vals = {"x": (0.1, 0.9), "y": (0.2, 0.3), "z": (0.3, 0.5)}
    for f in FILES[:3]:
        for run, (d, ins) in vals.items():
            res = [
                ResultRecord("deletion", None, "done", d),
                ResultRecord("insertion", None, "done", ins),
            ]
            st.write_unit(UnitRecord(f, run, "done", results=res))
    rank = rp.metric_ranking(st, ["deletion", "insertion"])
    assert rank["files"] == FILES[:3]
    assert [rank["table"]["deletion"][r]["rank"] for r in "xyz"] == [1, 2, 3]
    assert [rank["table"]["insertion"][r]["rank"] for r in "xyz"] == [1, 3, 2]
    # oriented scores: deletion (-0.1, -0.2, -0.3), insertion (0.9, 0.3, 0.5): ranks 3 2 1 / 3 1 2
    assert rank["spearman"][("deletion", "insertion")] == pytest.approx(0.5)
