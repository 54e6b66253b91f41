"""Layer randomisation of a model (Adebayo et al. 2018), shared by the sanity-check studies
(:mod:`unmask.studies.sanity`) and the metric ``model_parameter_randomisation``.

Layers: the modules that own parameters directly, in module registration order reversed (the
classifier head first). A module with ``reset_parameters()`` is reset by it under a CPU/CUDA
random state seeded with ``seed``; a module without it gets every own parameter redrawn from
N(0, rms²), ``rms`` the root mean square of its trained values, from a generator seeded the same
way. The full rules are in :mod:`unmask.studies.sanity`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["randomisation_order", "randomise_layer"]


def randomisation_order(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, top (last registered) first."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    names = [
        name
        for name, m in model.named_modules()
        if next(m.parameters(recurse=False), None) is not None
    ]
    return names[::-1]


@torch.no_grad()
def randomise_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters in place, reproducibly (see the module docs)."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        devices = sorted(
            {p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"}
        )
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            reset()
        return
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters(recurse=False):
        rms = p.detach().double().pow(2).mean().sqrt().item() if p.numel() else 0.0
        fresh = torch.randn(p.shape, generator=gen, dtype=torch.float64) * (rms if rms > 0 else 1.0)
        p.copy_(fresh.to(p))
