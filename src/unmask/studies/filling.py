"""The filling study of seed 001 (Agarwal & Nguyen 2020, Sec. 4.2, Table 1).

Question: which removal really removes an object? For images with an object mask, fill the
object with each removal strategy (blur, gray, inpainting, noise, or any other) and report

* **accuracy**: the share of filled images the classifier still puts in the label's class
  (top-1 == label). Lower = the object's evidence is gone. (Table 1, Inception-v3 on 1000 bird
  images: real 92.3 %, blur 26.4 %, gray 13.3 %, inpaint 8.9 %, noise 4.4 %.)
* **MS-SSIM** to the original image (``pytorch-msssim``, data range 1, Gaussian window 11,
  σ 1.5, the standard 5 scales and weights of Wang et al. 2003). MS-SSIM with 5 scales needs a
  smaller image side > 160 px; smaller images use the largest number of scales L that fits
  (side > 10·2^(L-1)), with the first L standard weights renormalised to sum 1 -- the
  ``ms_ssim_scales`` field says how many were used. (Table 1: blur .941, gray .731, inpaint
  .707, noise .692.)
* **LPIPS** (Zhang et al. 2018) only when a perceptual network is available. None is here: the
  ``lpips`` package needs torchvision (which does not import beside this torch build) and
  downloads its AlexNet/VGG weights. The ``lpips`` field is then ``None`` and ``lpips_note``
  says why -- never a stand-in number. Pass ``perceptual=fn`` (``fn(x, y) -> (B,)``, e.g. an
  ``lpips.LPIPS`` you built offline with inputs scaled to [-1, 1]) to fill it.

The classifier runs through :class:`unmask.Scorer`; the removals are :mod:`unmask.removal`
strategies, so ``Inpaint("telea")`` (classical) or a ``TorchScriptInpainter`` (learned) give the
"inpaint" column.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .._checks import check_mask, check_positive, check_targets
from .._types import Model
from ..models import as_classifier, check_model_input
from ..removal import Blur, Constant, Inpaint, Noise, make_removal
from ..scoring import Scorer

__all__ = [
    "filling_study",
    "ms_ssim",
    "ms_ssim_scales",
    "default_fillings",
    "format_filling_table",
    "MS_SSIM_WEIGHTS",
    "LPIPS_UNAVAILABLE",
]

#: The 5 scale weights of MS-SSIM (Wang, Simoncelli & Bovik 2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

#: Why the LPIPS column is empty unless a perceptual network is given.
LPIPS_UNAVAILABLE = (
    "LPIPS not computed: no perceptual network is available offline (the lpips package needs "
    "torchvision, which does not import beside torch 2.13 CPU here, and downloads AlexNet/VGG "
    "weights at run time); pass perceptual=fn to compute it"
)


def default_fillings() -> dict[str, Any]:
    """The four fillings of Table 1: blur (σ 10), gray (ImageNet mean colour, zero after
    normalisation), inpaint (OpenCV Telea; the paper used DeepFill-v1, unavailable here), noise
    (Gaussian N(0.5, 0.25²), seed 0)."""
    return {
        "blur": Blur(10.0),
        "gray": Constant("mean"),
        "inpaint": Inpaint("telea"),
        "noise": Noise("gaussian"),
    }


def ms_ssim_scales(height: int, width: int, win_size: int = 11) -> int:
    """The number of MS-SSIM scales (1..5) that fit an image: side > (win_size - 1)·2^(L-1)."""
    side = min(height, width)
    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and side > (win_size - 1) * 2**scales:
        scales += 1
    if scales == 0:
        raise ValueError(
            f"x: images of {height}x{width} are too small for MS-SSIM with a {win_size}-px window"
        )
    return scales


def ms_ssim(
    x: Tensor, y: Tensor, data_range: float = 1.0, win_size: int = 11
) -> tuple[Tensor, int]:
    """MS-SSIM (B,) between images (B, C, H, W) with pytorch-msssim, and the scales used.

    Five scales when the smaller side exceeds (win_size - 1)·16 = 160 px (``ms_ssim`` of
    pytorch-msssim itself); fewer for smaller images (see the module docs).
    """
    import pytorch_msssim

    if x.shape != y.shape:
        raise ValueError(f"y: expected the shape of x {tuple(x.shape)}, got {tuple(y.shape)}")
    h, w = x.shape[-2:]
    scales = ms_ssim_scales(h, w, win_size=win_size)
    x, y = x.float(), y.float()
    if scales == len(MS_SSIM_WEIGHTS):
        value = pytorch_msssim.ms_ssim(
            x, y, data_range=data_range, size_average=False, win_size=win_size
        )
        return value, scales
    return _ms_ssim_levels(x, y, scales, data_range, win_size), scales


def _ms_ssim_levels(x: Tensor, y: Tensor, scales: int, data_range: float, win_size: int) -> Tensor:
    """MS-SSIM (B,) over ``scales`` levels: the recursion of ``pytorch_msssim.ms_ssim`` with its
    per-scale SSIM and the first ``scales`` standard weights renormalised to sum 1."""
    impl = importlib.import_module("pytorch_msssim.ssim")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    win = impl._fspecial_gauss_1d(win_size, 1.5).repeat([x.shape[1], 1, 1, 1]).to(x)
    terms = []
    for level in range(scales):
        ssim_c, cs_c = impl._ssim(
            x, y, win=win, data_range=data_range, size_average=False, K=(0.01, 0.03)
        )
        if level < scales - 1:
            terms.append(torch.relu(cs_c))
            pad = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=pad)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=pad)
    terms.append(torch.relu(ssim_c))
    return torch.prod(torch.stack(terms) ** weights.reshape(-1, 1, 1), dim=0).mean(1)


def filling_study(
    model: Model,
    x: Tensor,
    masks: Tensor,
    labels: Any = None,
    removals: Mapping[str, Any] | None = None,
    *,
    include_real: bool = True,
    perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
    batch_size: int = 16,
) -> list[dict[str, Any]]:
    """Fill each image's object with every removal; accuracy, MS-SSIM and LPIPS per removal.

    Args:
        model: an :class:`unmask.Classifier`.
        x: images (B, 3, H, W) in [0, 1].
        masks: object masks (B, 1, H, W) in [0, 1], 1 = object (the part removed).
        labels: true class per image; None = the model's top-1 on the originals (then the
            "real" row is 100 % by construction).
        removals: name -> removal strategy (or a name for :func:`unmask.removal.make_removal`);
            default :func:`default_fillings` (blur / gray / inpaint / noise).
        include_real: add the unmodified images as a first row ``"real"``.
        perceptual: a perceptual distance ``fn(x, y) -> (B,)`` on [0, 1] images (LPIPS).
        batch_size: images per forward pass.

    Returns:
        One dict per removal: ``removal``, ``fill`` (its repr), ``n``, ``accuracy`` (fraction
        of top-1 == label), ``ms_ssim`` (mean), ``ms_ssim_scales``, ``lpips`` (mean or None),
        ``lpips_note`` (why it is None), and per image ``correct`` and ``ms_ssim_per_image``
        (and ``lpips_per_image`` when computed).
    """
    model = as_classifier(model, "model")
    x = check_model_input(model, x, "x")
    masks = check_mask(masks, x, "masks")
    if masks.shape[0] != x.shape[0]:
        masks = masks.expand(x.shape[0], -1, -1, -1)
    check_positive(batch_size, "batch_size", integer=True)
    if perceptual is not None and not callable(perceptual):
        raise TypeError(
            f"perceptual: expected a function (x, y) -> (B,), got {type(perceptual).__name__}"
        )
    scorer = Scorer(model, batch_size=batch_size)
    t = check_targets(labels, x.shape[0], model.num_classes, "labels")
    if t is None:
        t = scorer.top1(x)
    fills = (
        default_fillings()
        if removals is None
        else {str(k): make_removal(v) for k, v in removals.items()}
    )
    if not fills and not include_real:
        raise ValueError("removals: expected at least one removal (or include_real=True)")
    masks = masks.to(device=x.device, dtype=x.dtype)
    jobs: list[tuple[str, str, Callable[[], Tensor]]] = []
    if include_real:
        jobs.append(("real", "none", lambda: x))
    for name, removal in fills.items():
        jobs.append((name, repr(removal), functools.partial(removal, x, masks)))
    rows = []
    for name, fill, make in jobs:
        with torch.no_grad():
            filled = make().clamp(0, 1)
        correct = scorer.top1(filled) == t
        ssim_values, scales = ms_ssim(x, filled)
        row: dict[str, Any] = {
            "removal": name,
            "fill": fill,
            "n": int(x.shape[0]),
            "accuracy": float(correct.float().mean()),
            "ms_ssim": float(ssim_values.mean()),
            "ms_ssim_scales": scales,
            "lpips": None,
            "lpips_note": LPIPS_UNAVAILABLE,
            "correct": correct.tolist(),
            "ms_ssim_per_image": ssim_values.cpu().tolist(),
        }
        if perceptual is not None:
            with torch.no_grad():
                dist = torch.as_tensor(perceptual(x, filled)).reshape(-1).float().cpu()
            if dist.numel() != x.shape[0]:
                raise ValueError(f"perceptual: expected {x.shape[0]} distances, got {dist.numel()}")
            row.update(lpips=float(dist.mean()), lpips_note=None, lpips_per_image=dist.tolist())
        rows.append(row)
    return rows


def format_filling_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`filling_study` rows (accuracy in %, MS-SSIM, LPIPS)."""
    lines = [f"{'removal':<12} {'n':>5} {'acc %':>7} {'MS-SSIM':>8} {'scales':>6} {'LPIPS':>7}"]
    for r in rows:
        lp = "n/a" if r["lpips"] is None else f"{r['lpips']:.3f}"
        lines.append(
            f"{r['removal']:<12} {r['n']:>5} {100 * r['accuracy']:>7.1f} {r['ms_ssim']:>8.3f} "
            f"{r['ms_ssim_scales']:>6} {lp:>7}"
        )
    if any(r["lpips"] is None for r in rows):
        lines.append(f"note: {LPIPS_UNAVAILABLE}")
    return "\n".join(lines)
