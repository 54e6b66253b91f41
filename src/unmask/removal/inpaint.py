"""Removal by inpainting: the removed region is filled from its surroundings.

Classical inpainters run on the CPU, image by image (OpenCV's Telea and Navier-Stokes,
PatchMatch, scikit-image's biharmonic). A learned inpainter exported as TorchScript (the format
of LaMa's ``big-lama.pt``) runs batched on the model's device. Masks are binarised at 0.5; pixels
outside the hole are returned unchanged. Inpainting is not differentiable with respect to the
mask.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_positive
from .base import BySpec, blend, checked

__all__ = ["Inpaint", "TorchScriptInpainter"]

#: Colour used when the whole image is removed: there is no context to inpaint from.
_EMPTY_CONTEXT_FILL = (0.485, 0.456, 0.406)


def _binary(mask: Tensor) -> Tensor:
    return (mask > 0.5).to(mask.dtype)


def _full_hole_fill(x: Tensor) -> Tensor:
    return (
        torch.tensor(_EMPTY_CONTEXT_FILL, dtype=x.dtype, device=x.device)
        .reshape(1, -1, 1, 1)
        .expand_as(x)
    )


class Inpaint(BySpec):
    """Fill the removed region with a classical inpainter.

    Args:
        method: ``"telea"`` (OpenCV, Telea 2004), ``"ns"`` (OpenCV, Navier-Stokes, Bertalmio
            et al. 2001), ``"patchmatch"`` (Barnes et al. 2009, PyPatchMatch) or
            ``"biharmonic"`` (scikit-image; slow on large holes).
        radius: neighbourhood radius for Telea / Navier-Stokes.
        patch_size: patch size for PatchMatch.
        seed: random seed for PatchMatch.
        workers: images inpainted in parallel threads (default: the number of CPU cores;
            PatchMatch always runs sequentially so that its seed makes it reproducible).

    A hole that covers the whole image has no context: it is filled with the ImageNet mean
    colour.

    Example:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> m = torch.zeros(1, 1, 32, 32); m[..., 8:16, 8:16] = 1
        >>> Inpaint("telea")(x, m).shape
        torch.Size([1, 3, 32, 32])
    """

    differentiable = False

    def __init__(
        self,
        method: str = "telea",
        *,
        radius: int = 5,
        patch_size: int = 5,
        seed: int = 0,
        workers: int | None = None,
    ) -> None:
        check_choice(method, "method", ["telea", "ns", "patchmatch", "biharmonic"])
        workers = (os.cpu_count() or 1) if workers is None else workers
        check_positive(workers, "workers", integer=True)
        self.workers = workers
        check_positive(radius, "radius", integer=True)
        check_positive(patch_size, "patch_size", integer=True)
        if method == "patchmatch":
            try:
                from patchmatch import patch_match  # noqa: F401
            except ImportError:
                raise ValueError(
                    "method: 'patchmatch' needs the PyPatchMatch package: pip install pypatchmatch"
                ) from None
        self.method, self.radius, self.patch_size, self.seed = method, radius, patch_size, seed

    def _inpaint_one(self, img: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """img (H, W, C) float in [0, 1], hole (H, W) bool -> (H, W, C) float."""
        if self.method == "biharmonic":
            from skimage.restoration import inpaint_biharmonic

            return inpaint_biharmonic(img, hole, channel_axis=-1)
        u8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
        m8 = hole.astype(np.uint8) * 255
        if self.method == "patchmatch":
            from patchmatch import patch_match

            patch_match.set_random_seed(self.seed)
            channels = (
                [u8]
                if u8.shape[2] == 3
                else [np.repeat(u8[..., i : i + 1], 3, 2) for i in range(u8.shape[2])]
            )
            outs = [patch_match.inpaint(c, m8, patch_size=self.patch_size) for c in channels]
            out = outs[0] if u8.shape[2] == 3 else np.stack([o[..., 0] for o in outs], axis=-1)
        else:
            import cv2

            flag = cv2.INPAINT_TELEA if self.method == "telea" else cv2.INPAINT_NS
            out = cv2.inpaint(np.ascontiguousarray(u8), m8, self.radius, flag)
            if out.ndim == 2:
                out = out[..., None]
        return out.astype(np.float32) / 255.0

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Inpaint ``mask`` (B, 1, H, W) > 0.5 in ``x`` (B, C, H, W); returns (B, C, H, W)."""
        x, mask = checked(x, mask)
        b = max(x.shape[0], mask.shape[0])
        x, mask = x.expand(b, *x.shape[1:]), _binary(mask).expand(b, 1, *x.shape[-2:])
        imgs = x.detach().permute(0, 2, 3, 1).cpu().numpy()
        holes = mask[:, 0].detach().cpu().numpy() > 0.5
        empty = _full_hole_fill(x[:1])[0].permute(1, 2, 0).cpu().numpy()

        def one(i: int) -> np.ndarray:
            hole = holes[i]
            if not hole.any():
                return imgs[i]
            return empty if hole.all() else self._inpaint_one(imgs[i], hole)

        # OpenCV and scikit-image release the GIL; PatchMatch seeds a global generator, so it
        # stays sequential to remain reproducible.
        if self.workers > 1 and b > 1 and self.method != "patchmatch":
            with ThreadPoolExecutor(max_workers=min(self.workers, b)) as pool:
                fills = list(pool.map(one, range(b)))
        else:
            fills = [one(i) for i in range(b)]
        fill = torch.from_numpy(np.stack(fills)).permute(0, 3, 1, 2).to(x)
        return blend(x, fill, mask)

    @property
    def spec(self) -> str:
        """``"telea"``, or ``"telea:radius=3"`` etc. when a setting differs from its default."""
        parts = [
            f"{k}={getattr(self, k)}"
            for k, d in (("radius", 5), ("patch_size", 5), ("seed", 0))
            if getattr(self, k) != d
        ]
        return self.method + (":" + ",".join(parts) if parts else "")


class TorchScriptInpainter:
    """A learned inpainter saved as TorchScript, e.g. LaMa's ``big-lama.pt`` export.

    The module is called as ``module(image, mask)`` with image (N, 3, H, W) in [0, 1] and
    mask (N, 1, H, W) with 1 = hole (binarised), H and W padded (reflect) to multiples of
    ``pad_to``; it must return (N, 3, H, W) in [0, 1] (values are clipped). unmask ships no
    inpainter weights: export or obtain one yourself and pass its path.

    Args:
        path: the TorchScript file.
        device: where to run it (default: the input's device).
        batch_size: images per call (LaMa's export accepts batches; use 1 if yours does not).
        pad_to: pad height and width up to a multiple of this.
    """

    differentiable = False

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 8,
        pad_to: int = 8,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: TorchScript inpainter not found: {path}")
        check_positive(batch_size, "batch_size", integer=True)
        check_positive(pad_to, "pad_to", integer=True)
        try:
            self.module = torch.jit.load(str(path), map_location=device or "cpu").eval()
        except Exception as exc:  # torch raises RuntimeError / ValueError variants
            raise ValueError(f"path: not a loadable TorchScript module: {path} ({exc})") from None
        self.path, self.device, self.batch_size, self.pad_to = path, device, batch_size, pad_to

    @torch.no_grad()
    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        """Inpaint ``mask`` (B, 1, H, W) > 0.5 in ``x`` (B, 3, H, W); returns (B, 3, H, W)."""
        x, mask = checked(x, mask)
        b = max(x.shape[0], mask.shape[0])
        x, mask = x.expand(b, *x.shape[1:]), _binary(mask).expand(b, 1, *x.shape[-2:])
        h, w = x.shape[-2:]
        ph, pw = -h % self.pad_to, -w % self.pad_to
        device = torch.device(self.device) if self.device is not None else x.device
        outs = []
        for start in range(0, b, self.batch_size):
            xi = x[start : start + self.batch_size].to(device)
            mi = mask[start : start + self.batch_size].to(device)
            if ph or pw:
                mode = "reflect" if ph < h and pw < w else "replicate"
                xi = F.pad(xi, (0, pw, 0, ph), mode=mode)
                mi = F.pad(mi, (0, pw, 0, ph), mode="constant", value=0.0)
            out = self.module(xi, mi)
            if not isinstance(out, Tensor) or out.shape != xi.shape:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(
                    f"path: the inpainter {self.path.name} returned {got}, "
                    "expected an image tensor "
                    f"{tuple(xi.shape)}"
                )
            outs.append(out[..., :h, :w].float().clamp(0, 1).to(x))
        return blend(x, torch.cat(outs), mask)

    @property
    def spec(self) -> str:
        """``torchscript:path=PATH`` (absolute) plus the settings that differ from the defaults."""
        parts = [f"path={self.path.resolve()}"]
        parts += [
            f"{k}={getattr(self, k)}"
            for k, d in (("batch_size", 8), ("pad_to", 8))
            if getattr(self, k) != d
        ]
        if self.device is not None:
            parts.append(f"device={self.device}")
        return "torchscript:" + ",".join(parts)

    def __repr__(self) -> str:
        return f"TorchScriptInpainter({str(self.path)!r})"
