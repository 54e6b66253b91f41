"""HLTA's structure learning (island finding, level by level), re-implemented on numpy.

Follows ``StepwiseEMHLTA.IslandFinding`` of the HLTA code CWOX ships (kmpoon/hlta-xai): binary
variables (a class is in a document or not), pairwise empirical mutual information, latent
class models (LCM: one binary latent variable, the observed variables independent given it)
fitted by EM with random restarts, BIC averaged over batches of documents
(``BatchBICScoreCalculator``), the unidimensionality (UD) test and the correlation (CT) test.
Every EM runs on the distinct patterns of the projected data with their counts, so a fit costs
microseconds however many documents there are. Hard assignment of every document to the most
probable state of each island's latent variable gives the binary data of the next level.

What differs from the Java code: the EM restarts run side by side (the best likelihood wins)
instead of Chickering-Heckerman's staged restarts; ties in mutual information go to the lower
index; an island stops at ``max_island`` members even when fewer than three variables would be
left (HLTA keeps growing it then), and a variable left alone joins the island of its highest
mutual information that has room (HLTA never leaves one alone only because it grows islands
past the maximum); the latent states are ordered so that state 0 is the more frequent one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

__all__ = ["learn_levels", "find_islands", "mutual_information"]

_EPS = 1e-6


def logsumexp(a: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(a))) along ``axis`` (finite inputs; scipy's is slower on small arrays)."""
    m = a.max(axis=axis, keepdims=True)
    out = np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def mutual_information(x: np.ndarray) -> np.ndarray:
    """Pairwise empirical mutual information (V, V) of the columns of a binary matrix (N, V)."""
    n = x.shape[0]
    xs = sparse.csc_matrix(x, dtype=np.float64)
    n11 = np.asarray((xs.T @ xs).todense())
    n1 = np.diag(n11).copy()
    counts = {
        (1, 1): n11,
        (1, 0): n1[:, None] - n11,
        (0, 1): n1[None, :] - n11,
        (0, 0): n - n1[:, None] - n1[None, :] + n11,
    }
    pa = {1: n1 / n, 0: 1 - n1 / n}
    mi = np.zeros_like(n11)
    for (a, b), c in counts.items():
        p = c / n
        denom = pa[a][:, None] * pa[b][None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(p > 0, p * np.log(p / denom), 0.0)
        mi += term
    return mi


class _Data:
    """Binary data (N, V) with fast projection onto a few columns as weighted patterns."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asfortranarray(x, dtype=bool)
        self.n = x.shape[0]
        self.nz = [np.flatnonzero(self.x[:, v]) for v in range(x.shape[1])]
        self.freq = self.x.mean(axis=0)

    def patterns(self, cols: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Distinct rows of ``x[:, cols]`` (M, k) as floats, and their counts (M,)."""
        rows = np.unique(np.concatenate([self.nz[c] for c in cols]))
        k = len(cols)
        codes = self.x[np.ix_(rows, np.asarray(cols))].astype(np.int64) @ (
            1 << np.arange(k, dtype=np.int64)
        )
        uniq, counts = np.unique(codes, return_counts=True)
        zeros = self.n - rows.size  # documents with none of the columns: the pattern 0
        if zeros > 0:
            uniq = np.concatenate([[0], uniq])
            counts = np.concatenate([[zeros], counts])
        bits = ((uniq[:, None] >> np.arange(k)) & 1).astype(np.float64)
        return bits, counts.astype(np.float64)

    def assign(self, cols: list[int], prior: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """The most probable latent state (N,) of an LCM over ``cols`` for every document."""
        rows = np.unique(np.concatenate([self.nz[c] for c in cols]))
        sub = self.x[np.ix_(rows, np.asarray(cols))].astype(np.float64)
        zero = _log_joint_lcm(np.zeros((1, len(cols))), prior, theta)[0]
        out = np.full(self.n, int(np.argmax(zero)), dtype=bool)
        if rows.size:
            out[rows] = np.argmax(_log_joint_lcm(sub, prior, theta), axis=1).astype(bool)
        return out


def _margin(bits: np.ndarray, w: np.ndarray, pos: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Patterns of a subset of columns, with summed counts."""
    sub = bits[:, pos]
    codes = sub @ (1 << np.arange(len(pos)))
    uniq, inv = np.unique(codes, return_inverse=True)
    return ((uniq[:, None].astype(np.int64) >> np.arange(len(pos))) & 1).astype(
        np.float64
    ), np.bincount(inv, weights=w)


def _log_joint_lcm(bits: np.ndarray, prior: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """log P(x, y) (M, 2) of an LCM: prior (2,), theta (k, 2) = P(x_k = 1 | y)."""
    return np.log(prior)[None, :] + bits @ np.log(theta) + (1 - bits) @ np.log1p(-theta)


def _lcm_ll(bits: np.ndarray, w: np.ndarray, prior: np.ndarray, theta: np.ndarray) -> float:
    return float(w @ logsumexp(_log_joint_lcm(bits, prior, theta), axis=1))


@dataclass
class _LCM:
    vars: list[int]
    prior: np.ndarray  # (2,)
    theta: np.ndarray  # (k, 2)

    @property
    def dim(self) -> int:
        return 1 + 2 * len(self.vars)

    def drop(self, remove: list[int]) -> _LCM:
        keep = [i for i, v in enumerate(self.vars) if v not in remove]
        return _LCM([self.vars[i] for i in keep], self.prior, self.theta[keep])

    def add(self, var: int, cpt: np.ndarray) -> _LCM:
        return _LCM([*self.vars, var], self.prior, np.vstack([self.theta, cpt[None]]))


class _Fitter:
    def __init__(self, rng: np.random.Generator, restarts: int, steps: int, tol: float = 0.01):
        self.rng, self.restarts, self.steps, self.tol = rng, restarts, steps, tol

    def lcm(
        self,
        bits: np.ndarray,
        w: np.ndarray,
        prior: np.ndarray | None = None,
        theta: np.ndarray | None = None,
        fixed: np.ndarray | None = None,
    ) -> tuple:
        """EM for an LCM; ``prior`` given = fixed; ``fixed`` (k,) marks the fixed rows of
        ``theta``. Returns (prior, theta, loglik) of the best restart."""
        r, k = self.restarts, bits.shape[1]
        fixed = np.zeros(k, dtype=bool) if fixed is None else fixed
        th = np.clip(self.rng.uniform(0, 1, (r, k, 2)), 0.02, 0.98)
        if theta is not None:
            th[:, fixed] = theta[fixed]
        if prior is None:
            pr = self.rng.dirichlet([1.0, 1.0], size=r)
            pr = np.clip(pr, 0.02, 0.98)
            pr /= pr.sum(axis=1, keepdims=True)
            fixed_prior = False
        else:
            pr = np.repeat(prior[None], r, axis=0)
            fixed_prior = True
        total = w.sum()
        last = np.full(r, -np.inf)
        for _ in range(self.steps):
            lj = (
                np.log(pr)[:, None, :]
                + np.einsum("mk,rky->rmy", bits, np.log(th))
                + np.einsum("mk,rky->rmy", 1 - bits, np.log1p(-th))
            )
            norm = logsumexp(lj, axis=2, keepdims=True)
            ll = np.einsum("m,rm->r", w, norm[..., 0])
            post = np.exp(lj - norm) * w[None, :, None]  # (r, m, 2)
            wy = post.sum(axis=1)  # (r, 2)
            if not fixed_prior:
                pr = np.clip(wy / total, _EPS, 1 - _EPS)
            new = np.einsum("rmy,mk->rky", post, bits) / np.maximum(wy[:, None, :], 1e-300)
            new = np.clip(new, _EPS, 1 - _EPS)
            th = np.where(fixed[None, :, None], th, new)
            if np.all(ll - last < self.tol):
                break
            last = ll
        best = int(np.argmax(last))
        return pr[best], th[best], float(last[best])

    def two_latent(
        self, bits: np.ndarray, w: np.ndarray, prior: np.ndarray, theta_bp: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """EM for H1 -> {bp0, bp1, H2}, H2 -> {cp0, cp1} with H1's prior and bp CPTs fixed.

        ``bits`` (M, 4) columns bp0, bp1, cp0, cp1. Returns phi (2,) = P(H2 = 1 | H1) and
        theta_cp (2, 2) = P(cp = 1 | H2)."""
        r = self.restarts
        phi = np.clip(self.rng.uniform(0, 1, (r, 2)), 0.02, 0.98)
        th = np.clip(self.rng.uniform(0, 1, (r, 2, 2)), 0.02, 0.98)
        a = (
            np.log(prior)[None, :]
            + bits[:, :2] @ np.log(theta_bp)
            + (1 - bits[:, :2]) @ np.log1p(-theta_bp)
        )  # (m, h1)
        cp = bits[:, 2:]
        last = np.full(r, -np.inf)
        for _ in range(self.steps):
            log_h2 = np.stack([np.log1p(-phi), np.log(phi)], axis=2)  # (r, h1, h2)
            b = np.einsum("mk,rkz->rmz", cp, np.log(th)) + np.einsum(
                "mk,rkz->rmz", 1 - cp, np.log1p(-th)
            )
            lj = a[None, :, :, None] + log_h2[:, None, :, :] + b[:, :, None, :]  # (r,m,h1,h2)
            norm = logsumexp(lj.reshape(r, -1, 4), axis=2)
            ll = norm @ w
            post = np.exp(lj - norm[:, :, None, None]) * w[None, :, None, None]
            s = post.sum(axis=1)  # (r, h1, h2)
            phi = np.clip(s[:, :, 1] / np.maximum(s.sum(axis=2), 1e-300), _EPS, 1 - _EPS)
            pz = post.sum(axis=2)  # (r, m, h2)
            th = np.clip(
                np.einsum("rmz,mk->rkz", pz, cp) / np.maximum(pz.sum(axis=1)[:, None, :], 1e-300),
                _EPS,
                1 - _EPS,
            )
            if np.all(ll - last < self.tol):
                break
            last = ll
        best = int(np.argmax(last))
        return phi[best], th[best]


def _two_latent_ll(
    bits: np.ndarray,
    w: np.ndarray,
    m1: _LCM,
    cp_pos: list[int],
    phi: np.ndarray,
    theta_cp: np.ndarray,
) -> float:
    """Log-likelihood of m2: m1's variables except the cp pair under H1, the pair under H2."""
    other = [i for i in range(len(m1.vars)) if i not in cp_pos]
    bo = bits[:, other]
    a = (
        np.log(m1.prior)[None, :]
        + bo @ np.log(m1.theta[other])
        + (1 - bo) @ np.log1p(-m1.theta[other])
    )  # (m, h1)
    bc = bits[:, cp_pos]
    b = bc @ np.log(theta_cp) + (1 - bc) @ np.log1p(-theta_cp)  # (m, h2)
    log_h2 = np.stack([np.log1p(-phi), np.log(phi)], axis=1)  # (h1, h2)
    lj = a[:, :, None] + log_h2[None] + b[:, None, :]
    return float(w @ logsumexp(lj.reshape(len(w), 4), axis=1))


def find_islands(
    data: _Data,
    mi: np.ndarray,
    *,
    max_island: int,
    ud_threshold: float,
    ct_threshold: float,
    bic_batch: int,
    fitter: _Fitter,
    update: Callable[[int], None] | None = None,
) -> list[_LCM]:
    """Partition the variables into islands (HLTA's IslandFinding); one LCM per island."""
    v = mi.shape[0]
    left = np.ones(v, dtype=bool)
    work = mi.astype(np.float64, copy=True)
    np.fill_diagonal(work, -np.inf)
    islands: list[_LCM] = []
    n = float(data.n)
    scale = (bic_batch / n) if 0 < bic_batch < n else 1.0
    log_b = np.log(min(bic_batch, n)) if 0 < bic_batch < n else np.log(n)

    def bic(ll: float, dim: int) -> float:
        return ll * scale - dim * log_b / 2.0

    def take(model: _LCM) -> None:
        islands.append(model)
        for u in model.vars:
            left[u] = False
            work[u, :] = -np.inf
            work[:, u] = -np.inf
        if update is not None:
            update(int((~left).sum()))

    def fit_all(cols: list[int]) -> _LCM:
        bits, w = data.patterns(cols)
        pr, th, _ = fitter.lcm(bits, w)
        return _LCM(list(cols), pr, th)

    def out_link(cluster: list[int], inside: list[int]) -> tuple[int, int]:
        sub = work[inside].copy()
        sub[:, cluster] = -np.inf
        i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
        if not np.isfinite(sub[i, j]):
            # no information at all to any variable left: link to the first one left
            rest = [u for u in np.flatnonzero(left) if u not in cluster]
            return inside[0], int(rest[0])
        return inside[int(i)], int(j)

    while left.any():
        rem = int(left.sum())
        if rem <= 3:
            cols = [int(u) for u in np.flatnonzero(left)]
            if rem == 1:
                _attach(cols[0], islands, data, mi, max_island, fitter)
                left[cols[0]] = False
                if update is not None:
                    update(int((~left).sum()))
                break
            take(fit_all(cols))
            break
        flat = int(np.argmax(work))
        a, b = divmod(flat, v)
        if not np.isfinite(work[a, b]):  # the variables left share no information: pair them
            rest = [int(u) for u in np.flatnonzero(left)]
            a, b = rest[0], rest[1]
        best_pair = [int(a), int(b)]
        cluster = list(best_pair)
        _, third = out_link(cluster, cluster)
        cluster.append(third)
        m0 = fit_all(cluster)
        while True:
            in_v, x = out_link(cluster, [u for u in cluster if u not in best_pair])
            cluster.append(x)
            bits, w = data.patterns(cluster)
            # m0 + x independent of the latent variable (the CT test's reference)
            fx = data.freq[x]
            ll_old = _lcm_ll(bits[:, :-1], w, m0.prior, m0.theta) + float(
                w
                @ (
                    bits[:, -1] * np.log(max(fx, _EPS))
                    + (1 - bits[:, -1]) * np.log(max(1 - fx, _EPS))
                )
            )
            # m1: x's CPT learned in an LCM with the seed pair and the prior fixed
            b3, w3 = _margin(bits, w, [0, 1, len(cluster) - 1])
            th0 = np.vstack([m0.theta[:2], np.full((1, 2), 0.5)])
            _, th3, _ = fitter.lcm(
                b3, w3, prior=m0.prior, theta=th0, fixed=np.array([True, True, False])
            )
            m1 = m0.add(x, th3[2])
            ll_uni = _lcm_ll(bits, w, m1.prior, m1.theta)
            # m2: the new variable and its closest one under a second latent variable
            cp_pos = [cluster.index(in_v), len(cluster) - 1]
            b4, w4 = _margin(bits, w, [0, 1, *cp_pos])
            phi, th_cp = fitter.two_latent(b4, w4, m1.prior, m1.theta[:2])
            ll_mul = _two_latent_ll(bits, w, m1, cp_pos, phi, th_cp)
            bic_old = bic(ll_old, m0.dim + 1)
            bic_uni = bic(ll_uni, m1.dim)
            bic_mul = bic(ll_mul, m1.dim + 2)
            outside = rem - len(cluster)
            if bic_uni - bic_old < ct_threshold and outside + 1 >= 3:
                take(m0)
                break
            if bic_mul - bic_uni > ud_threshold:
                if outside == 0:
                    take(m1.drop([in_v, x]))
                    b_s, w_s = _margin(bits, w, [cp_pos[0], cp_pos[1], 1])
                    th_s = np.vstack([th_cp, np.full((1, 2), 0.5)])
                    pr2, th2, _ = fitter.lcm(
                        b_s, w_s, theta=th_s, fixed=np.array([True, True, False])
                    )
                    take(_LCM([in_v, x], pr2, th2[:2]))
                else:
                    take(m1.drop([in_v, x]))
                break
            if outside == 0 or len(cluster) >= max_island:
                take(m1)
                break
            m0 = m1
    return islands


def _attach(
    u: int, islands: list[_LCM], data: _Data, mi: np.ndarray, max_island: int, fitter: _Fitter
) -> None:
    """A variable left alone joins the island of highest mutual information that has room."""
    best, score = None, -np.inf
    for i, isl in enumerate(islands):
        if len(isl.vars) < max_island:
            s = float(mi[u, isl.vars].max())
            if s > score:
                best, score = i, s
    if best is None:  # every island is full: the variable is an island of its own
        islands.append(
            _LCM(
                [u],
                np.array([1 - data.freq[u], data.freq[u]]).clip(_EPS, 1 - _EPS),
                np.array([[_EPS, 1 - _EPS]]),
            )
        )
        return
    cols = [*islands[best].vars, u]
    bits, w = data.patterns(cols)
    pr, th, _ = fitter.lcm(bits, w)
    islands[best] = _LCM(cols, pr, th)


def learn_levels(
    x: np.ndarray,
    *,
    levels: int | None,
    max_island: int,
    max_top: int,
    ud_threshold: float,
    ct_threshold: float,
    bic_batch: int,
    em_restarts: int,
    em_steps: int,
    rng: np.random.Generator,
    progress: Callable[[int, int], Callable[[int | None], None]],
) -> list[list[list[int]]]:
    """Partitions level by level: ``[0]`` groups the columns of ``x``, ``[l]`` the groups of
    level ``l``. Stops when a level has at most ``max_top`` groups or after ``levels`` levels."""
    fitter = _Fitter(rng, em_restarts, em_steps)
    out: list[list[list[int]]] = []
    cur = x
    while True:
        level = len(out) + 1
        data = _Data(cur)
        mi = mutual_information(cur)
        bar = progress(cur.shape[1], level)
        islands = find_islands(
            data,
            mi,
            max_island=max_island,
            ud_threshold=ud_threshold,
            ct_threshold=ct_threshold,
            bic_batch=bic_batch,
            fitter=fitter,
            update=bar,
        )
        bar(None)
        # deterministic order: by the smallest member
        islands.sort(key=lambda m: min(m.vars))
        out.append([sorted(m.vars) for m in islands])
        if len(islands) <= max(max_top, 1) or (levels is not None and level >= levels):
            break
        cols = []
        for m in islands:
            z = data.assign(m.vars, m.prior, m.theta)
            cols.append(~z if z.mean() > 0.5 else z)
        cur = np.asfortranarray(np.stack(cols, axis=1))
    return out
