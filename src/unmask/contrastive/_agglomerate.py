"""Size-constrained average-linkage agglomeration, and a hierarchy of it (the data-free tree)."""

from __future__ import annotations

import numpy as np

__all__ = ["constrained_average_linkage", "hierarchy"]


def constrained_average_linkage(
    sim: np.ndarray,
    n_clusters: int,
    max_size: int,
    min_size: int = 2,
    min_similarity: float = -np.inf,
) -> list[list[int]]:
    """Group the items of a similarity matrix (n, n) into about ``n_clusters`` clusters.

    Repeatedly merge the two clusters of the highest average pairwise similarity whose union
    has at most ``max_size`` items, until ``n_clusters`` are left, no merge fits, or the best
    average similarity is not above ``min_similarity``; then every cluster smaller than
    ``min_size`` joins the cluster of highest average similarity that has room. Clusters are
    returned sorted by their smallest item, items sorted.
    """
    n = sim.shape[0]
    if n <= 1:
        return [list(range(n))]
    sums = np.array(sim, dtype=np.float64, copy=True)
    sizes = np.ones(n)
    active = np.ones(n, dtype=bool)
    members: list[list[int]] = [[i] for i in range(n)]
    avg = sums.copy()
    np.fill_diagonal(avg, -np.inf)
    count = n

    def merge(i: int, j: int) -> None:
        nonlocal count
        sums[i, :] += sums[j, :]
        sums[:, i] += sums[:, j]
        sizes[i] += sizes[j]
        members[i] += members[j]
        members[j] = []
        active[j] = False
        avg[j, :] = -np.inf
        avg[:, j] = -np.inf
        row = sums[i, :] / (sizes[i] * sizes)
        row[~active] = -np.inf
        row[i] = -np.inf
        avg[i, :] = row
        avg[:, i] = row
        count -= 1

    def masked(limit: np.ndarray | None = None) -> np.ndarray:
        ok = (sizes[:, None] + sizes[None, :]) <= max_size
        out = np.where(ok, avg, -np.inf)
        if limit is not None:
            out = np.where(limit[:, None] | limit[None, :], out, -np.inf)
        return out

    while count > n_clusters:
        m = masked()
        flat = int(np.argmax(m))
        i, j = divmod(flat, n)
        if not np.isfinite(m[i, j]) or m[i, j] <= min_similarity:
            break
        merge(min(i, j), max(i, j))
    while True:
        small = active & (sizes < min_size)
        if not small.any() or count <= 1:
            break
        m = masked(small)
        flat = int(np.argmax(m))
        i, j = divmod(flat, n)
        if not np.isfinite(m[i, j]):
            break
        merge(min(i, j), max(i, j))
    groups = [sorted(g) for g in members if g]
    return sorted(groups, key=lambda g: g[0])


def hierarchy(
    sim: np.ndarray,
    *,
    first_clusters: int,
    max_size: int,
    branching: float,
    max_top: int,
    levels: int | None,
    min_similarity: float = 0.0,
) -> list[list[list[int]]]:
    """Partitions level by level: ``[0]`` groups the items, ``[l]`` the groups of level ``l``.

    Level 1 has about ``first_clusters`` groups, merging only groups of average similarity
    above ``min_similarity`` (items related to nothing are then paired with their most similar
    group); each next level about ``1 / branching`` as many (the similarity of two groups: the
    mean similarity of their items; any two may merge, so that the levels end in at most
    ``max_top`` roots), until a level has at most ``max_top`` groups or ``levels`` levels are
    built.
    """
    out: list[list[list[int]]] = []
    groups_items = None
    cur = sim
    target = first_clusters
    while True:
        parts = constrained_average_linkage(
            cur, max(1, target), max_size, min_similarity=min_similarity if not out else -np.inf
        )
        out.append(parts)
        if len(parts) <= max_top or (levels is not None and len(out) >= levels) or len(parts) <= 1:
            break
        if groups_items is None:
            groups_items = [list(g) for g in parts]
        else:
            groups_items = [[i for m in g for i in groups_items[m]] for g in parts]
        k = len(groups_items)
        nxt = np.empty((k, k))
        for a in range(k):
            rows = sim[groups_items[a]]
            for b in range(a, k):
                nxt[a, b] = nxt[b, a] = rows[:, groups_items[b]].mean()
        cur = nxt
        target = max(1, round(k / branching))
    return out
