"""A digital cone-adapted shearlet system, computed with FFTs in pure torch.

The system is a set of ``K`` real, non-subsampled, full-size filters given by their frequency
responses ``psi_hat_j`` on the DFT grid of an ``H x W`` image. The coefficients of an image are
``c_j = F^-1(F(x) * psi_hat_j)``; the image is recovered with the canonical dual frame,
``x = F^-1(sum_j F(c_j) * psi_hat_j / sum_j psi_hat_j^2)``.

Construction (a smooth, band-limited shearlet system in the spirit of Guo & Labate's smooth
Parseval frames of shearlets, laid out like ShearLab 3D):

* **Scales.** A Meyer-type low-pass ``Phi_j(xi) = phi(xi_1 / a_j) phi(xi_2 / a_j)`` with
  ``a_j = 2^(j - J)`` (frequencies in cycles per sample, ``|xi_i| <= 1/2``). The low-pass filter
  is ``Phi_0``; the band of scale ``j = 1..J`` is the square corona
  ``W_j = sqrt(Phi_j^2 - Phi_(j-1)^2)``. Since ``Phi_J = 1`` on the whole grid, the squares of
  the low-pass and of the ``J`` coronae sum to one. The finest corona reaches Nyquist.
* **Directions.** Each corona is split into wedges that are equispaced in *slope*, as shearing
  does: in the horizontal cone (``|xi_2| <= |xi_1|``) the pseudo-angle is ``q = xi_2 / xi_1``
  in [-1, 1], in the vertical cone ``q = 2 - xi_1 / xi_2`` in (1, 3); ``q`` is continuous
  across the cone seams, periodic with period 4 and invariant under ``xi -> -xi``. The ``D``
  wedges of a scale are ``V_k(q) = w((q - 4k / D) / (4 / D))`` with a Meyer window ``w`` whose
  squares sum to one, so ``D = 2^(s + 2)`` reproduces ShearLab's shear level ``s``: the shears
  ``-2^s..2^s`` of both cones, the two seam (diagonal) shearlets counted once. ShearLab's
  default shear levels ``ceil(j / 2)`` give 8, 8, 16, 16 directions for 4 scales: the
  ShearletX configuration, 49 filters.
* **Real filters.** Each filter is even (``psi_hat(xi) = psi_hat(-xi)``) and real, so its
  spatial kernel and the coefficients are real. On the Nyquist row/column of even sizes the DFT
  grid identifies ``xi`` and ``-xi`` only up to aliasing; there the response is replaced by
  the root mean square of the two values, which keeps the filters real and the squares summing
  to one.

The system is therefore a Parseval frame (``dual_weights == 1`` up to rounding), the inverse is
the adjoint, and ``T^-1(T(x)) = x`` to machine precision for any ``H x W``.

References:
    G. Kutyniok, W.-Q. Lim, R. Reisenhofer, "ShearLab 3D: Faithful digital shearlet transforms
    based on compactly supported shearlets", ACM Trans. Math. Software 42(1), 2016.

    K. Guo, D. Labate, "The construction of smooth Parseval frames of shearlets", Math. Model.
    Nat. Phenom. 8(1), 2013.

    S. Kolek, R. Windesheim, H. Andrade-Loarca, G. Kutyniok, R. Levie, "Explaining Image
    Classifiers with Multiscale Directional Image Representation", CVPR 2023 (ShearletX).

Example:
    >>> import torch
    >>> system = shearlet_system(32, 48)
    >>> system.num_filters
    49
    >>> x = torch.rand(2, 3, 32, 48)
    >>> c = system.forward(x)
    >>> tuple(c.shape)
    (2, 3, 49, 32, 48)
    >>> bool((system.inverse(c) - x).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor

from unmask._checks import check_images

__all__ = ["ShearletSystem", "shearlet_system", "default_directions"]


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


def _meyer_ramp(t: Tensor) -> Tensor:
    """Meyer's auxiliary function: 0 for t <= 0, 1 for t >= 1, ``nu(t) + nu(1 - t) = 1``."""
    t = t.clamp(0.0, 1.0)
    return t**4 * (35 - 84 * t + 70 * t**2 - 20 * t**3)


def _lowpass_1d(x: Tensor) -> Tensor:
    """Meyer low-pass profile: 1 for ``|x| <= 1/2``, 0 for ``|x| >= 1``, smooth in between."""
    return torch.cos(0.5 * math.pi * _meyer_ramp(2 * x.abs() - 1))


def _bump(t: Tensor) -> Tensor:
    """Meyer bump on [-1, 1] with ``w(t)^2 + w(t - 1)^2 = 1`` for t in [0, 1]."""
    return torch.cos(0.5 * math.pi * _meyer_ramp(t.abs()))


def _pseudo_angle(xi1: Tensor, xi2: Tensor) -> Tensor:
    """Cone-adapted pseudo-angle ``q`` in [-1, 3) (period 4), invariant under ``xi -> -xi``.

    ``q = xi2 / xi1`` in the horizontal cone, ``2 - xi1 / xi2`` in the vertical cone; ``q`` is a
    monotone function of the orientation angle ``atan2(xi2, xi1)`` modulo pi.
    """
    horizontal = xi2.abs() <= xi1.abs()
    safe1 = torch.where(xi1 == 0, torch.ones_like(xi1), xi1)
    safe2 = torch.where(xi2 == 0, torch.ones_like(xi2), xi2)
    q = torch.where(horizontal, xi2 / safe1, 2 - xi1 / safe2)
    return torch.where((xi1 == 0) & (xi2 == 0), torch.zeros_like(q), q)


def _angle_of(q: float) -> float:
    """Orientation angle in [0, pi) of pseudo-angle ``q`` (inverse of ``_pseudo_angle``)."""
    q = (q + 1) % 4 - 1  # to [-1, 3)
    theta = math.atan(q) if q <= 1 else math.pi / 2 - math.atan(2 - q)
    return theta % math.pi


def _directional_windows(q: Tensor, directions: int) -> Tensor:
    """Wedges ``V_k(q)``, k = 0..D-1, centred at ``q = 4k / D``; ``sum_k V_k^2 = 1``.

    Returns:
        Tensor (D, *q.shape).
    """
    if directions == 1:
        return torch.ones_like(q).unsqueeze(0)
    width = 4.0 / directions
    centres = torch.arange(directions, dtype=q.dtype) * width
    # signed distance to each centre on the circle of length 4, in [-2, 2)
    d = torch.remainder(q.unsqueeze(0) - centres.view(-1, *([1] * q.ndim)) + 2, 4) - 2
    return _bump(d / width)


def _symmetrize(psi: Tensor) -> Tensor:
    """Make responses even on the DFT grid: ``sqrt((psi[k]^2 + psi[-k]^2) / 2)``.

    A no-op wherever ``psi`` is already even; only the Nyquist row/column of even sizes, where
    the grid aliases ``xi`` and ``-xi``, changes. Keeps ``sum_j psi_j^2`` unchanged.
    """
    mirrored = torch.roll(torch.flip(psi, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return torch.sqrt(0.5 * (psi**2 + mirrored**2))


# --------------------------------------------------------------------------------------------
# Filter bank (built once per size and configuration, in float64 on the CPU)
# --------------------------------------------------------------------------------------------


def default_directions(scales: int) -> tuple[int, ...]:
    """ShearLab's default directions: shear level ``s = ceil(j / 2)`` at scale ``j = 1..J``.

    Shear level ``s`` gives ``2^(s + 2)`` directions per scale.

    >>> default_directions(4)
    (8, 8, 16, 16)
    """
    return tuple(2 ** (math.ceil(j / 2) + 2) for j in range(1, scales + 1))


@lru_cache(maxsize=4)
def _filter_bank(
    height: int, width: int, directions: tuple[int, ...]
) -> tuple[Tensor, Tensor, Tensor]:
    """Frequency responses, scale and orientation of every filter, in float64 on the CPU.

    Returns:
        ``(filters (K, H, W), scale_of (K,), direction_of (K,))``; filter 0 is the low-pass.
    """
    scales = len(directions)
    xi2 = torch.fft.fftfreq(height, dtype=torch.float64).view(-1, 1).expand(height, width)
    xi1 = torch.fft.fftfreq(width, dtype=torch.float64).view(1, -1).expand(height, width)

    def lowpass(j: int) -> Tensor:  # Phi_j, with Phi_J = 1 on the grid (|xi| <= 1/2)
        a = 2.0 ** (j - scales)
        return _lowpass_1d(xi1 / a) * _lowpass_1d(xi2 / a)

    q = _pseudo_angle(xi1, xi2)
    filters = [lowpass(0)]
    scale_of = [-1]
    direction_of = [math.nan]
    for j, n_dir in enumerate(directions):
        corona = torch.sqrt((lowpass(j + 1) ** 2 - lowpass(j) ** 2).clamp_min(0))
        filters.extend(corona * _directional_windows(q, n_dir))
        scale_of += [j] * n_dir
        direction_of += [_angle_of(4.0 * k / n_dir) for k in range(n_dir)]
    psi = _symmetrize(torch.stack(filters))
    # outside its support a response is a product with cos(pi / 2) = 6e-17, not 0: make it 0, so
    # that the filters are exactly band-limited (each covers ~8% of the plane at 224²)
    psi = torch.where(psi.abs() < 1e-14, torch.zeros_like(psi), psi)
    return (
        psi,
        torch.tensor(scale_of, dtype=torch.long),
        torch.tensor(direction_of, dtype=torch.float64),
    )


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a value >= 1, got {value!r}")
    return value


def _check_config(
    height: object, width: object, scales: object, directions: object
) -> tuple[int, ...]:
    """Validate a configuration; return the directions per scale as a tuple."""
    _check_int(height, "height")
    _check_int(width, "width")
    n_scales = _check_int(scales, "scales")
    if directions is None:
        return default_directions(n_scales)
    if not isinstance(directions, Sequence) or isinstance(directions, str):
        raise TypeError(f"directions: expected a sequence of ints, got {directions!r}")
    dirs = tuple(directions)
    if len(dirs) != n_scales:
        raise ValueError(
            f"directions: expected one entry per scale ({n_scales}), got {len(dirs)}: {dirs!r}"
        )
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dirs):
        raise ValueError(f"directions: expected ints >= 1, got {dirs!r}")
    return dirs


class ShearletSystem:
    """Digital cone-adapted shearlet system of ``H x W`` images (a Parseval frame).

    Prefer the cached factory :func:`shearlet_system`. See the module docstring for the
    construction.

    Args:
        height: image height H.
        width: image width W.
        scales: number of directional scales J (besides the low-pass).
        directions: number of directions per scale, coarse to fine. ``None`` uses ShearLab's
            default shear levels: (8, 8, 16, 16) for 4 scales, as in ShearletX. Multiples of 4
            give the symmetric cone layout (``2^(s+2)`` = shear level ``s``); 1 gives an
            isotropic (wavelet-like) band.
        device: device of ``filters`` (default CPU). The transforms run on the input's
            device and dtype whatever this is.
        dtype: dtype of ``filters`` (float32 or float64).

    Attributes:
        filters: (K, H, W) real frequency responses ``psi_hat_j`` on the ``torch.fft.fft2``
            grid (unshifted); filter 0 is the low-pass.
        dual_weights: (H, W) ``sum_j psi_hat_j^2`` (1 up to rounding: Parseval frame).
        num_filters: K = 1 + sum(directions).
        scale_of: (K,) long, -1 for the low-pass, 0..J-1 (coarse to fine) for the others.
        direction_of: (K,) orientation in radians in [0, pi) of each filter's frequency
            wedge centre, i.e. the *normal* of the edges it responds to, measured from the
            width (x, column) axis towards the height (y, row, downwards) axis: 0 responds to
            vertical edges, pi/2 to horizontal edges. NaN for the low-pass.
        directions: directions per scale.

    Example:
        >>> system = ShearletSystem(64, 64)
        >>> [int((system.scale_of == s).sum()) for s in range(-1, 4)]
        [1, 8, 8, 16, 16]
    """

    def __init__(
        self,
        height: int,
        width: int,
        scales: int = 4,
        directions: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.directions = _check_config(height, width, scales, directions)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        self.height, self.width, self.scales = height, width, scales
        device = torch.device("cpu") if device is None else torch.device(device)
        psi, scale_of, direction_of = _filter_bank(height, width, self.directions)
        self.filters: Tensor = psi.to(device=device, dtype=dtype)
        self.dual_weights: Tensor = (psi**2).sum(0).to(device=device, dtype=dtype)
        self.num_filters: int = psi.shape[0]
        self.scale_of: Tensor = scale_of.to(device)
        self.direction_of: Tensor = direction_of.to(device=device, dtype=dtype)
        # half-plane responses for rfft2, per (device, dtype) of the inputs
        self._half: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}
        self._full: dict[tuple[torch.device, torch.dtype], Tensor] = {}
        self._sparse: dict[tuple[torch.device, torch.dtype, str], object] = {}

    def __repr__(self) -> str:
        return (
            f"ShearletSystem(height={self.height}, width={self.width}, scales={self.scales}, "
            f"directions={self.directions}, num_filters={self.num_filters})"
        )

    def _half_filters(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Analysis and synthesis responses on the rfft2 half plane, (K, H, W // 2 + 1)."""
        key = (device, dtype)
        if key not in self._half:
            psi = _filter_bank(self.height, self.width, self.directions)[0]
            psi = psi[..., : self.width // 2 + 1]
            dual = psi / (psi**2).sum(0)
            self._half[key] = (
                psi.to(device=device, dtype=dtype).contiguous(),
                dual.to(device=device, dtype=dtype).contiguous(),
            )
        return self._half[key]

    def _full_filters(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The real, even responses ``psi_hat_j`` on the full fft2 grid, (K, H, W)."""
        key = (device, dtype)
        if key not in self._full:
            psi = _filter_bank(self.height, self.width, self.directions)[0]  # float64
            self._full[key] = psi.to(device=device, dtype=dtype).contiguous()
        return self._full[key]

    def sparse_filters(
        self, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The analysis filters as a sparse (K, H, W) bank: ``(positions, frequencies, values)``.

        ``positions`` index the flattened bank (K · H · W), ``frequencies`` the flattened plane
        (H · W); each (N,) long, with ``values`` (N,). The filters are band-limited: N is about
        four planes' worth, not K = 49.
        """
        key = (device, dtype, "analysis")
        if key not in self._sparse:
            bank = self._full_filters(device, dtype)
            positions = bank.flatten().nonzero().squeeze(1)
            self._sparse[key] = (positions, positions % bank[0].numel(), bank.flatten()[positions])
        return self._sparse[key]  # type: ignore[return-value]

    def synthesis_matrix(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The dual-filter sum over bands as a sparse CSR matrix (H · W', K · H · W').

        W' = W // 2 + 1.
        ``D @ view_as_real(rfft2(c)).reshape(K · H · W', 2)`` is the spectrum
        ``Σ_j F(c_j) · psi_hat_j / Σ_j psi_hat_j²`` of the synthesis of one plane's
        coefficients c (K, H, W): with band-limited filters ~17x faster than the dense product
        and sum at 224².
        """
        key = (device, dtype, "synthesis")
        if key not in self._sparse:
            dual = self._half_filters(device, dtype)[1]
            plane = dual[0].numel()
            positions = dual.flatten().nonzero().squeeze(1)
            indices = torch.stack([positions % plane, positions])
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*[Ss]parse CSR tensor support is in beta"
                )
                matrix = (
                    torch.sparse_coo_tensor(
                        indices,
                        dual.flatten()[positions],
                        (plane, dual.numel()),
                        check_invariants=False,
                    )
                    .coalesce()
                    .to_sparse_csr()
                )
            self._sparse[key] = matrix
        return self._sparse[key]  # type: ignore[return-value]

    def _check_spatial(self, t: Tensor, name: str, layout: str) -> None:
        if tuple(t.shape[-2:]) != (self.height, self.width):
            raise ValueError(
                f"{name}: expected spatial size {self.height}x{self.width} of this shearlet "
                f"system, shape {layout}, got {tuple(t.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Shearlet coefficients ``c_j = F^-1(F(x) * psi_hat_j)``.

        Args:
            x: (B, C, H, W) float32 or float64 images.

        Returns:
            (B, C, K, H, W) real coefficients, same dtype and device as ``x``; differentiable.
        """
        check_images(x, "x")
        self._check_spatial(x, "x", f"(B, C, {self.height}, {self.width})")
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"x: expected dtype float32 or float64, got {x.dtype}")
        # Two real planes per complex FFT: the filters are real and even, so
        # F^-1(psi_hat * F(a + i b)) = (psi * a) + i (psi * b). K full complex inverse FFTs per
        # pair of planes run ~2.5x faster than 2K half-spectrum real inverse FFTs (irfft2), so
        # an odd plane out is paired with zeros.
        size = (self.height, self.width)
        planes = x.reshape(-1, *size)  # (N, H, W), N = B * C
        n = planes.shape[0]
        half = (n + 1) // 2
        imag = planes[half:]
        if n % 2:
            imag = torch.cat([imag, torch.zeros_like(planes[:1])])
        paired = self.analysis_pairs(torch.complex(planes[:half], imag))  # (half, K, H, W)
        c = torch.cat([paired.real, paired.imag[: n - half]])
        return c.reshape(*x.shape[:-2], self.num_filters, *size)

    __call__ = forward

    def analysis_pairs(self, pairs: Tensor, out: Tensor | None = None) -> Tensor:
        """Coefficients of two real planes packed as one complex plane ``a + i b``.

        Args:
            pairs: (N, H, W) complex.
            out: optional zero-initialised real buffer (N, K · H · W, 2) to reuse across calls
                (only the filters' supports are written, so it stays zero elsewhere).

        Returns:
            (N, K, H, W) complex whose real and imaginary parts are the coefficients of ``a``
            and ``b`` (the filters are real and even).
        """
        n = pairs.shape[0]
        positions, frequencies, values = self.sparse_filters(pairs.device, pairs.real.dtype)
        spectrum = torch.view_as_real(torch.fft.fft2(pairs)).reshape(n, -1, 2)  # (N, H * W, 2)
        if out is None:
            out = spectrum.new_zeros(n, self.num_filters * self.height * self.width, 2)
        out[:, positions] = spectrum[:, frequencies] * values[:, None]
        bank = torch.view_as_complex(out.view(n, self.num_filters, self.height, self.width, 2))
        return torch.fft.ifft2(bank)

    def inverse(self, c: Tensor) -> Tensor:
        """Reconstruction with the canonical dual frame.

        ``x = F^-1(sum_j F(c_j) * psi_hat_j / sum_j psi_hat_j^2)``; exact inverse of
        :meth:`forward`, and the least-squares synthesis for arbitrary (e.g. masked) ``c``.

        Args:
            c: (B, C, K, H, W) float32 or float64 coefficients.

        Returns:
            (B, C, H, W) images, same dtype and device as ``c``; differentiable.
        """
        layout = f"(B, C, {self.num_filters}, {self.height}, {self.width})"
        if not isinstance(c, Tensor):
            raise TypeError(f"c: expected a torch.Tensor of shape {layout}, got {type(c).__name__}")
        if c.ndim != 5 or c.shape[2] != self.num_filters:
            raise ValueError(f"c: expected shape {layout}, got {tuple(c.shape)}")
        self._check_spatial(c, "c", layout)
        if c.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"c: expected dtype float32 or float64, got {c.dtype}")
        _, dual = self._half_filters(c.device, c.dtype)
        spectrum = torch.fft.rfft2(c).mul_(dual).sum(dim=2)  # (B, C, H, W//2+1); in place: no copy
        return torch.fft.irfft2(spectrum, s=(self.height, self.width))


@lru_cache(maxsize=8)
def _cached_system(
    height: int,
    width: int,
    scales: int,
    directions: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> ShearletSystem:
    return ShearletSystem(height, width, scales, directions, device, dtype)


def shearlet_system(
    height: int,
    width: int,
    scales: int = 4,
    directions: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> ShearletSystem:
    """Cached :class:`ShearletSystem`: the same configuration returns the same object.

    Args:
        height: image height H.
        width: image width W.
        scales: number of directional scales.
        directions: directions per scale, coarse to fine; ``None`` = ShearLab's default
            (8, 8, 16, 16 for 4 scales).
        device: device of the ``filters`` attribute (default CPU).
        dtype: dtype of the ``filters`` attribute.

    Returns:
        The shearlet system (treat it as read-only: it is shared).

    Example:
        >>> shearlet_system(224, 224) is shearlet_system(224, 224)
        True
    """
    dirs = _check_config(height, width, scales, directions)
    dev = torch.device("cpu") if device is None else torch.device(device)
    return _cached_system(height, width, scales, dirs, dev, dtype)
