"""ROAD's noisy linear imputation (Rong et al., "A Consistent and Efficient Evaluation Strategy
for Attribution Methods", ICML 2022).

Every removed pixel takes the weighted mean of its 8 neighbours, weight 1/6 for the 4 direct
neighbours and 1/12 for the 4 diagonal ones (they sum to 1). Neighbours outside the image are
left out and the remaining weights renormalised (divided by their sum), as the reference
imputer does. A removed neighbour is itself unknown, so the removed pixels of one image satisfy
a sparse linear system ``(Σ_j w_j) v_i - Σ_{j removed} w_j v_j = Σ_{j kept} w_j x_j``, solved
once per image for all channels (one factorisation, one right-hand side per channel) with
:func:`scipy.sparse.linalg.spsolve`. Gaussian noise ``noise · N(0, 1)`` is then added to the
imputed pixels (not clipped, as in the reference).

The fill depends on the mask, so this is not a fixed fill and not differentiable. Masks are
binarised at 0.5 (``mask > 0.5`` is removed), as the reference reads its mask.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch import Tensor

from .._checks import check_seed
from .base import BySpec, checked

__all__ = ["NoisyLinearImputation", "NEIGHBOURS", "impute"]

#: (row offset, column offset, weight) of the 8 neighbours.
NEIGHBOURS = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)


def impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Linear imputation of one image without noise.

    Args:
        image: (C, H, W) float64 values.
        removed: (H, W) bool, True = to be imputed.

    Returns:
        (C, H, W) float64: ``image`` with the removed pixels replaced by the solution. When every
        pixel is removed, no neighbour is known and the system is singular: the fill is then
        0.5 (gray) everywhere.
    """
    c, h, w = image.shape
    flat = removed.reshape(-1)
    unknown = np.flatnonzero(flat)
    out = image.reshape(c, -1).copy()
    if unknown.size == 0:
        return image.copy()
    if unknown.size == flat.size:
        out[:] = 0.5
        return out.reshape(c, h, w)
    row_of = np.full(flat.size, -1, dtype=np.int64)
    row_of[unknown] = np.arange(unknown.size)
    r, q = np.divmod(unknown, w)
    diag = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, c))
    rows, cols, vals = [], [], []
    for dr, dq, weight in NEIGHBOURS:
        nr, nq = r + dr, q + dq
        inside = (nr >= 0) & (nr < h) & (nq >= 0) & (nq < w)
        eq = np.flatnonzero(inside)
        nb = nr[inside] * w + nq[inside]
        diag[eq] += weight
        gone = flat[nb]
        rows.append(eq[gone])
        cols.append(row_of[nb[gone]])
        vals.append(np.full(int(gone.sum()), -weight))
        rhs[eq[~gone]] += weight * out[:, nb[~gone]].T
    rows.append(np.arange(unknown.size))
    cols.append(np.arange(unknown.size))
    vals.append(diag)
    entries = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
    a = scipy.sparse.csc_matrix(entries, shape=(unknown.size, unknown.size))
    solution = scipy.sparse.linalg.spsolve(a, rhs)
    out[:, unknown] = np.asarray(solution).reshape(unknown.size, c).T
    return out.reshape(c, h, w)


class NoisyLinearImputation(BySpec):
    """ROAD's removal: removed pixels imputed from their neighbours, plus a little noise.

    Args:
        noise: standard deviation of the Gaussian noise added to imputed pixels (0 = none;
            ROAD: 0.01).
        seed: seed of the noise. The noise is one (C, H, W) field drawn at every call from a
            generator seeded with ``seed``, so the same input gives the same output and a batch
            gives what single calls give (the reference draws fresh noise at every call).

    Example:
        >>> x = torch.rand(1, 3, 6, 6)
        >>> mask = torch.zeros(1, 1, 6, 6); mask[..., 2:4, 2:4] = 1
        >>> out = NoisyLinearImputation(noise=0)(x, mask)
        >>> bool(torch.equal(out[..., :2, :], x[..., :2, :])), NoisyLinearImputation(seed=3).spec
        (True, 'road:seed=3')
    """

    differentiable = False

    def __init__(self, noise: float = 0.01, seed: int = 0) -> None:
        if (
            isinstance(noise, bool)
            or not isinstance(noise, int | float)
            or not np.isfinite(noise)
            or noise < 0
        ):
            raise ValueError(f"noise: expected a finite number >= 0, got {noise!r}")
        self.noise, self.seed = float(noise), check_seed(seed)

    @property
    def spec(self) -> str:
        parts = []
        if self.noise != 0.01:
            value = int(self.noise) if self.noise.is_integer() else repr(self.noise)
            parts.append(f"noise={value}")
        if self.seed:
            parts.append(f"seed={self.seed}")
        return "road" + (":" + ",".join(parts) if parts else "")

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Impute ``mask`` (B, 1, H, W) (> 0.5 = removed) in ``x`` (B, C, H, W) -> (B, C, H, W)."""
        x, mask = checked(x, mask)
        n = max(x.shape[0], mask.shape[0])
        xs, ms = x.expand(n, *x.shape[1:]), mask.expand(n, *mask.shape[1:])
        gen = torch.Generator().manual_seed(self.seed)
        field = torch.randn(x.shape[1:], generator=gen, dtype=torch.float64).numpy() * self.noise
        images = xs.detach().cpu().double().numpy()
        removed = (ms[:, 0] > 0.5).cpu().numpy()
        out = np.empty_like(images)
        for i in range(n):
            out[i] = impute(images[i], removed[i])
            if self.noise:
                out[i] += np.where(removed[i][None], field, 0.0)
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)
