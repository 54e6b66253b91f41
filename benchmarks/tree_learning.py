"""How close do learned label trees come to the published ResNet-50 tree? (ARI at level 1)

Learns the lowest level of a label tree from the 50,000 published top-class documents of
ResNet-50 (``labels_resnet50.json``, the input the published tree can be checked on) with
several approaches, and prints the adjusted Rand index (scikit-learn's ``adjusted_rand_score``)
between each learned level-1 partition and the published tree's (287 nodes), together with
the number of groups, their sizes and the time. The data-free tree of EfficientNet-Lite0
(cosine similarity of its last-layer weights) is scored the same way.

    python benchmarks/tree_learning.py                       # every approach (a few minutes)
    python benchmarks/tree_learning.py --only hlta,avg-cosine
    python benchmarks/tree_learning.py --json benchmarks/results/tree_learning.json

Needs scikit-learn (the ``test`` extra). Approaches:

* ``learn_tree-default``: :func:`unmask.contrastive.learn_tree` with its defaults
  (``method="average"``: size-constrained average linkage of PPMI, the ``cavg-ppmi`` row
  with a positive-similarity stop).
* ``hlta``: ``learn_tree(method="hlta")`` (HLTA's island finding re-implemented) with its
  defaults, and variants (``hlta-restarts16``, ``hlta-noct``, ``hlta-batch2000`` ...).
* ``avg-<sim>``: plain average-linkage clustering (scipy) of a co-occurrence similarity, cut
  into 287 clusters (the published count), no size bound.
* ``cavg-<sim>``: size-constrained average linkage (at most 10 classes, then lone classes join
  their most similar group), stopped at 287 groups.
* ``louvain-<sim>``: Louvain communities (networkx) of the similarity graph; communities of
  more than 10 classes are split by constrained average linkage; resolution chosen from a grid.
* ``spectral-<sim>``: spectral clustering (scikit-learn) into 287 clusters.

Similarities from co-occurrence counts C (N documents, n_i documents with class i):
``cosine`` C_ij / sqrt(n_i n_j); ``jaccard`` C_ij / (n_i + n_j - C_ij); ``lift`` C_ij N /
(n_i n_j); ``ppmi`` max(0, log lift); ``npmi`` log lift / -log(C_ij / N) (0 where C_ij = 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DOCS = Path("/work/shared/data/cwox/labels_resnet50.json")
K_PUBLISHED = 287


def cooccurrence(docs: list[list[int]], v: int) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.zeros((len(docs), v))
    for i, d in enumerate(docs):
        x[i, d] = 1
    c = x.T @ x
    return c, np.diag(c).copy(), len(docs)


def similarity(name: str, c: np.ndarray, n1: np.ndarray, n: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "cosine":
            s = c / np.sqrt(np.outer(n1, n1))
        elif name == "jaccard":
            s = c / (n1[:, None] + n1[None, :] - c)
        elif name == "lift":
            s = c * n / np.outer(n1, n1)
        elif name == "ppmi":
            s = np.maximum(0, np.log(c * n / np.outer(n1, n1)))
        elif name == "npmi":
            s = np.where(c > 0, np.log(c * n / np.outer(n1, n1)) / -np.log(c / n), 0.0)
        else:
            raise ValueError(name)
    s = np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)
    np.fill_diagonal(s, s.max() if s.size else 1.0)
    return s


def labels_of(groups: list[list[int]], v: int) -> np.ndarray:
    lab = np.full(v, -1)
    for g, members in enumerate(groups):
        lab[members] = g
    return lab


def avg_linkage(s: np.ndarray, k: int) -> list[list[int]]:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    d = s.max() - s
    np.fill_diagonal(d, 0)
    z = linkage(squareform(d, checks=False), method="average")
    lab = fcluster(z, k, criterion="maxclust")
    return [list(np.flatnonzero(lab == g)) for g in np.unique(lab)]


def constrained(s: np.ndarray, k: int) -> list[list[int]]:
    from unmask.contrastive._agglomerate import constrained_average_linkage

    return constrained_average_linkage(s, k, 10)


def louvain(s: np.ndarray, resolution: float, seed: int = 0) -> list[list[int]]:
    import networkx as nx

    from unmask.contrastive._agglomerate import constrained_average_linkage

    w = s.copy()
    np.fill_diagonal(w, 0)
    g = nx.from_numpy_array(np.maximum(w, 0))
    comms = nx.community.louvain_communities(g, weight="weight", resolution=resolution, seed=seed)
    out = []
    for cm in comms:
        cm = sorted(cm)
        if len(cm) <= 10:
            out.append(cm)
        else:
            sub = s[np.ix_(cm, cm)]
            parts = constrained_average_linkage(sub, max(1, round(len(cm) / 3.5)), 10)
            out += [[cm[i] for i in p] for p in parts]
    return out


def spectral(s: np.ndarray, k: int, seed: int = 0) -> list[list[int]]:
    from sklearn.cluster import SpectralClustering

    a = np.maximum(s, 0)
    np.fill_diagonal(a, 0)
    a = a + 1e-9
    lab = SpectralClustering(
        k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr"
    ).fit_predict(a)
    return [list(np.flatnonzero(lab == g)) for g in np.unique(lab)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated approach names")
    ap.add_argument("--json", default=None, help="write the results as JSON")
    ap.add_argument("--no-data-free", action="store_true", help="skip the data-free tree")
    ap.add_argument(
        "--stats",
        action="store_true",
        help="only print statistics of the documents and the published tree",
    )
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from sklearn.metrics import adjusted_rand_score

    from unmask.contrastive import data_free_tree, learn_tree, load_tree, read_documents

    torch.set_num_threads(1)
    ref_tree = load_tree("resnet50")
    ref = ref_tree.partition(0)
    v = 1000
    ref_lab = np.array([hash(ref[c]) for c in range(v)])
    docs_all = read_documents(DOCS)
    docs = [d for d in docs_all if len(d) > 1]
    c, n1, n = cooccurrence(docs, v)
    if args.stats:
        from collections import Counter
        from itertools import combinations

        lengths = Counter(len(d) for d in docs_all)
        groups: dict[str, list[int]] = {}
        for k, g in ref.items():
            groups.setdefault(g, []).append(k)
        within = [(a, b) for g in groups.values() for a, b in combinations(g, 2)]
        seen = sum(c[a, b] > 0 for a, b in within)
        print(
            f"{len(docs_all)} documents by number of classes: {dict(sorted(lengths.items()))}; "
            f"{len(docs)} with two or more"
        )
        print(
            f"published level-1 nodes: {len(groups)}; class pairs within a node: {len(within)}, "
            f"of which co-occur in a document: {seen} ({seen / len(within):.1%})"
        )
        return 0
    sims = {
        name: similarity(name, c, n1, n) for name in ("cosine", "jaccard", "lift", "ppmi", "npmi")
    }

    def score(groups: list[list[int]]) -> dict:
        lab = labels_of(groups, v)
        sizes = np.bincount([len(g) for g in groups])
        return {
            "ari": float(adjusted_rand_score(ref_lab, lab)),
            "groups": len(groups),
            "min_size": int(min(len(g) for g in groups)),
            "max_size": int(max(len(g) for g in groups)),
            "size_counts": {int(k): int(m) for k, m in enumerate(sizes) if m},
        }

    def learned(**kw):
        tree = learn_tree(docs, num_classes=v, progress=False, **kw)
        return [n.classes for n in tree.level_nodes(1)]

    def hlta(**kw):
        return learned(method="hlta", **kw)

    runs: dict[str, object] = {
        "learn_tree-default": lambda: learned(),
        "hlta": lambda: hlta(),
        "hlta-restarts16": lambda: hlta(em_restarts=16),
        "hlta-seed1": lambda: hlta(seed=1),
        "hlta-noct": lambda: hlta(ct_threshold=-1e12),
        "hlta-batch2000": lambda: hlta(bic_batch=2000),
        "hlta-batch10000": lambda: hlta(bic_batch=10000),
    }
    for name, s in sims.items():
        runs[f"avg-{name}"] = lambda s=s: avg_linkage(s, K_PUBLISHED)
        runs[f"cavg-{name}"] = lambda s=s: constrained(s, K_PUBLISHED)
        runs[f"spectral-{name}"] = lambda s=s: spectral(s, K_PUBLISHED)
        for res in (1.0, 2.0, 5.0, 10.0):
            runs[f"louvain-{name}-r{res:g}"] = lambda s=s, res=res: louvain(s, res)
    if args.only:
        want = args.only.split(",")
        runs = {
            k: f for k, f in runs.items() if any(k == w or k.startswith(w + "-r") for w in want)
        }
    results = {}
    for name, fn in runs.items():
        t0 = time.perf_counter()
        groups = fn()  # type: ignore[operator]
        r = score(groups)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        results[name] = r
        print(
            f"{name:<24} ARI {r['ari']:.3f}  groups {r['groups']:>4}  sizes "
            f"{r['min_size']}-{r['max_size']}  {r['seconds']:>6.1f} s",
            flush=True,
        )
    if not args.no_data_free and (not args.only or "data-free" in args.only.split(",")):
        import unmask

        t0 = time.perf_counter()
        model = unmask.load_model("efficientnet_lite0")
        tree = data_free_tree(model)
        r = score([n.classes for n in tree.level_nodes(1)])
        r["seconds"] = round(time.perf_counter() - t0, 1)
        r["levels"] = [len(tree.level_nodes(lv)) for lv in range(1, tree.depth + 1)]
        results["data-free-efficientnet_lite0"] = r
        print(
            f"{'data-free (lite0)':<24} ARI {r['ari']:.3f}  groups {r['groups']:>4}  sizes "
            f"{r['min_size']}-{r['max_size']}  levels {r['levels']}  {r['seconds']:>6.1f} s"
        )
    if args.json:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        out = {
            "documents": str(DOCS),
            "reference": "unmask.contrastive.load_tree('resnet50')",
            "commit": commit,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "results": results,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
