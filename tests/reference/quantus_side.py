"""Runs quantus 0.6.0 metrics in the side venv (see ``_quantus_venv.py``); imports no unmask code.

Protocol: ``python quantus_side.py`` reads one JSON request per line on stdin and answers one
JSON line on stdout (quantus' own prints go to stderr)::

    {"data": "in.npz", "model": "model.pt2", "repeats": 1, "threads": 1,
     "cases": [{"name": "pf", "metric": "PixelFlipping", "init": {...}, "call": {...},
                "x": "x", "y": "y", "a": "a", "explain": null, "perturb": null}]}
    -> {"values": {"pf": [...]}, "seconds": {"pf": [t1, ...]}, "versions": {...}}

``model`` is a ``torch.export`` program (dynamic batch); ``data`` holds the arrays the cases
name. ``init`` / ``call`` are quantus' keyword arguments. ``perturb`` replaces quantus' random
draws by arrays drawn on the unmask side, so both read the same numbers:

- ``{"kind": "add_noise", "array": "noise"}``: call k returns ``clip(arr + noise[k], 0, 1)``
  (MaxSensitivity, AvgSensitivity, LocalLipschitzEstimate);
- ``{"kind": "noise_image", "array": "noise"}``: call k puts ``noise[k % len(noise)]`` at the
  indices (MonotonicityCorrelation's uniform baseline);
- ``{"kind": "mask_fill", "value": 0.0}``: the features under a (B, 1, H, W) mask take
  ``value`` in every channel (IROF; quantus' own mask replacement fails on RGB inputs);
- ``"subsets": "name"``: ``np.random.choice`` returns the rows of that array in turn
  (FaithfulnessCorrelation's random subsets).

``explain`` names an explain function written here in plain torch: ``"input_x_gradient"``
(``(x · ∂z_y/∂x)`` summed over channels, (B, 1, H, W)) or ``"gradient"`` (``|∂z_y/∂x|``, max over
channels), as unmask's explainers of the same names.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any

import numpy as np
import quantus
import torch
from torch import nn


class _Model(nn.Module):
    """The exported program as an nn.Module quantus can put in eval mode."""

    def __init__(self, program: Any) -> None:
        super().__init__()
        object.__setattr__(self, "program", program)  # not a submodule: no train()/eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def _grad(model: nn.Module, inputs: np.ndarray, targets: np.ndarray) -> tuple[Any, Any]:
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32).requires_grad_()
    z = model(x)
    t = torch.as_tensor(np.asarray(targets).reshape(-1), dtype=torch.long)
    (g,) = torch.autograd.grad(z.gather(1, t[:, None]).sum(), x)
    return x.detach(), g


def input_x_gradient(
    model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any
) -> np.ndarray:
    x, g = _grad(model, inputs, targets)
    return (x * g).sum(1, keepdim=True).numpy()


def gradient(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
    _, g = _grad(model, inputs, targets)
    return g.abs().amax(1, keepdim=True).numpy()


EXPLAIN = {"input_x_gradient": input_x_gradient, "gradient": gradient}


class AddNoise:
    """Call k: ``clip(arr + noise[k], 0, 1)`` on the flattened batch."""

    def __init__(self, noise: np.ndarray) -> None:
        self.noise, self.k = noise.reshape(len(noise), -1), 0

    def __call__(self, arr: np.ndarray, indices: Any = None, **_: Any) -> np.ndarray:
        out = np.clip(arr + self.noise[self.k % len(self.noise)][None], 0.0, 1.0)
        self.k += 1
        return out.astype(arr.dtype)


class NoiseImage:
    """Call k: the features at ``indices`` (B, n) take the values of ``noise[k % len(noise)]``."""

    def __init__(self, noise: np.ndarray) -> None:
        self.noise, self.k = noise.reshape(len(noise), -1), 0

    def __call__(self, arr: np.ndarray, indices: np.ndarray, **_: Any) -> np.ndarray:
        out = arr.copy()
        rows = np.arange(arr.shape[0])[:, None]
        out[rows, indices] = self.noise[self.k % len(self.noise)][indices]
        self.k += 1
        return out


class MaskFill:
    """``arr`` where the (B, 1, H, W) ``mask`` is set takes ``value`` in every channel (quantus
    0.6.0's own ``baseline_replacement_by_mask`` asserts equal shapes, so its IROF fails on
    every RGB input)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, arr: np.ndarray, mask: np.ndarray, **_: Any) -> np.ndarray:
        out = arr.copy()
        out[np.broadcast_to(mask, arr.shape)] = self.value
        return out


@contextlib.contextmanager
def fixed_choice(rows: np.ndarray):
    """``np.random.choice`` returns ``rows[0]``, ``rows[1]``, ... (then restored)."""
    original, it = np.random.choice, iter(rows)
    np.random.choice = lambda *a, **k: next(it).copy()
    try:
        yield
    finally:
        np.random.choice = original


def run_case(case: dict, data: Any, model: nn.Module) -> np.ndarray:
    init = dict(case.get("init", {}))
    perturb = case.get("perturb")
    if perturb:
        if perturb["kind"] == "mask_fill":
            init["perturb_func"] = MaskFill(float(perturb["value"]))
        else:
            cls = {"add_noise": AddNoise, "noise_image": NoiseImage}[perturb["kind"]]
            init["perturb_func"] = cls(data[perturb["array"]])
    for key in ("similarity_func", "norm_numerator", "norm_denominator"):
        if isinstance(init.get(key), str):  # a function of quantus' own, by name
            init[key] = getattr(
                quantus.functions.similarity_func
                if key == "similarity_func"
                else quantus.functions.norm_func,
                init[key],
            )
    metric = getattr(quantus, case["metric"])(disable_warnings=True, **init)
    call = dict(case.get("call", {}))
    if case.get("explain"):
        call["explain_func"] = EXPLAIN[case["explain"]]
    a = data[case["a"]] if case.get("a") else None
    x, y = data[case.get("x", "x")], data[case.get("y", "y")]
    ctx = fixed_choice(data[case["subsets"]]) if case.get("subsets") else contextlib.nullcontext()
    with ctx:
        out = metric(model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu", **call)
    return np.asarray(out, dtype=np.float64)


def serve() -> None:
    cache: dict[str, Any] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        torch.set_num_threads(int(request.get("threads", 1)))
        key = (request["model"], request["data"])
        if key not in cache:  # read once: the timed calls find everything in memory
            program = torch.export.load(request["model"]).module()
            with np.load(request["data"]) as f:
                cache.clear()
                cache[key] = (_Model(program).eval(), {k: f[k] for k in f.files})
        model, data = cache[key]
        values: dict[str, list] = {}
        seconds: dict[str, list] = {}
        with contextlib.redirect_stdout(sys.stderr):
            for case in request["cases"]:
                times = []
                for _ in range(int(request.get("repeats", 1))):
                    start = time.perf_counter()
                    v = run_case(case, data, model)
                    times.append(time.perf_counter() - start)
                values[case["name"]], seconds[case["name"]] = v.tolist(), times
        reply: dict[str, Any] = {
            "values": values,
            "seconds": seconds,
            "versions": {
                "quantus": quantus.__version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
            },
        }
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
