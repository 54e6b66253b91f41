"""The small CNN of the synthetic benchmark: its architecture, training loop and loader.

:class:`SyntheticCNN` is four 3×3 convolutions (batch norm, ReLU; the first two with stride 2,
the last dilated so that a feature sees 31 px) named ``features`` (a (B, 64, 16, 16) map at
64² input, the layer for CAMs), then global average pooling and one linear layer ``head``.
:func:`train` fits it on :func:`unmask.datasets.synthetic.generate` images of the ``"train"``
split, seeded; the shipped weights (``data/synthetic_cnn.pt``, about 250 KB) are what
``unmask datasets train-synthetic`` writes with its defaults, and :func:`load` (the model
``"synthetic_cnn"`` of :func:`unmask.load_model`) reads them with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_positive
from ..models import Classifier
from . import synthetic

__all__ = ["SyntheticCNN", "train", "accuracy", "load", "save", "default_weights", "WEIGHTS_FORMAT",
           "FEATURE_LAYER"]

#: The ``format`` entry of a weights file written by :func:`save`.
WEIGHTS_FORMAT = "unmask.synthetic_cnn/1"
MEAN = STD = 0.5


class SyntheticCNN(nn.Module):
    """Conv-BN-ReLU ×4 (16, 32, 64, 64 channels; the first two with stride 2, the last
    dilated by 2) -> global average pooling -> linear.

    Shapes:
        forward: normalised images (B, 3, H, W) -> logits (B, num_classes);
        ``features(x)``: (B, 64, H / 4, W / 4).

    Example:
        >>> SyntheticCNN()(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 6])
    """

    def __init__(self, num_classes: int = len(synthetic.CLASSES), width: int = 64) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation,
                              bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, 16, stride=2),
            *block(16, 32, stride=2),
            *block(32, width),
            *block(width, width, dilation=2),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))


#: The layer of CAMs (a path in ``model.net.named_modules()``).
FEATURE_LAYER = "features"


def _classifier(net: SyntheticCNN, size: int, classes: list[str], mean: float = MEAN,
                std: float = STD) -> Classifier:
    return Classifier(net.eval(), mean=(mean,) * 3, std=(std,) * 3, input_size=size,
                      class_names=classes, name="synthetic_cnn", feature_layer=FEATURE_LAYER)


@contextlib.contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    """Deterministic torch algorithms and a fixed thread count, restored afterwards; the
    caller's global random state is left as it was."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (images in [0, 1] for a Classifier) on a batch."""
    correct = 0
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            pred = model(images[i : i + batch_size]).argmax(1)
            correct += int((pred == labels[i : i + batch_size]).sum())
    return correct / images.shape[0]


def train(n_train: int = 12000, epochs: int = 12, seed: int = 0, *,
          size: int = synthetic.DEFAULT_SIZE, batch_size: int = 64, lr: float = 3e-3,
          n_val: int = 500, threads: int = 1,
          log: Callable[[str], None] | None = None) -> tuple[Classifier, dict[str, Any]]:
    """Train :class:`SyntheticCNN` on ``n_train`` images of the ``"train"`` split.

    Adam (weight decay 1e-4) with a one-cycle learning-rate schedule peaking at ``lr``, random
    horizontal and vertical flips (the class of every shape survives a flip), cross-entropy.
    The images of split ``"train"`` with ``seed`` are generated once; the parameters'
    initialisation, the order of the batches and the flips are drawn from ``seed``; torch's
    deterministic algorithms are on and the thread count fixed, so the same arguments give the
    same weights on the same torch build.

    Args:
        n_train: training images (split ``"train"``).
        epochs: passes over them.
        seed: the seed of the data and of the training.
        size: image side.
        batch_size: images per step.
        lr: the peak learning rate.
        n_val: images of split ``"val"`` on which the accuracy is printed after each epoch.
        threads: torch threads during training.
        log: a function receiving one line per epoch (e.g. ``print``), or None.

    Returns:
        ``(model, info)``: the trained :class:`~unmask.Classifier` (eval mode) and a dict with
        the settings and the final ``val_accuracy``.
    """
    for value, name in ((n_train, "n_train"), (epochs, "epochs"), (batch_size, "batch_size"),
                        (n_val, "n_val"), (threads, "threads")):
        check_positive(value, name, integer=True)
    check_positive(lr, "lr")
    say = log or (lambda _line: None)
    with _deterministic(threads):
        data = synthetic.generate(n_train, seed=seed, split="train", size=size)
        val = synthetic.generate(n_val, seed=seed, split="val", size=size)
        torch.manual_seed(seed)
        net = SyntheticCNN()
        model = _classifier(net, size, list(synthetic.CLASSES))
        gen = torch.Generator().manual_seed(seed)
        steps = epochs * math.ceil(n_train / batch_size)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        loss_fn = nn.CrossEntropyLoss()
        val_acc = 0.0
        for epoch in range(epochs):
            net.train()
            order = torch.randperm(n_train, generator=gen)
            total = 0.0
            for i in range(0, n_train, batch_size):
                idx = order[i : i + batch_size]
                x = data.images[idx]
                flips = torch.rand(2, x.shape[0], generator=gen) < 0.5
                x = torch.where(flips[0, :, None, None, None], x.flip(-1), x)
                x = torch.where(flips[1, :, None, None, None], x.flip(-2), x)
                loss = loss_fn(model(x), data.labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * x.shape[0]
            net.eval()
            val_acc = accuracy(model, val.images, val.labels)
            say(f"epoch {epoch + 1}/{epochs}: loss {total / n_train:.4f}, "
                f"val accuracy {val_acc:.4f}")
    info = {"n_train": n_train, "epochs": epochs, "seed": seed, "size": size,
            "batch_size": batch_size, "lr": lr, "val_accuracy": val_acc,
            "torch": str(torch.__version__), "threads": threads}
    return model.eval(), info


def save(model: Classifier, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a trained synthetic CNN) as a weights file :func:`load` reads."""
    if not isinstance(model, Classifier) or not isinstance(model.net, SyntheticCNN):
        raise TypeError(
            f"model: expected the Classifier of a SyntheticCNN, got {type(model).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"out: {path} is a directory; give a file name such as weights.pt")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"out: the folder {path.parent} does not exist")
    state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
    size = int(model.input_size[0]) if model.input_size else synthetic.DEFAULT_SIZE
    torch.save({"format": WEIGHTS_FORMAT, "state_dict": state, "classes": list(model.class_names),
                "input_size": size, "mean": MEAN, "std": STD, "info": dict(info or {})}, path)
    return path


def default_weights() -> Path:
    """The shipped weights file of the ``"synthetic_cnn"`` model."""
    return Path(str(resources.files("unmask.datasets") / "data" / "synthetic_cnn.pt"))


def load(weights: str | Path | None = None) -> Classifier:
    """The trained synthetic CNN as a :class:`~unmask.Classifier` (eval mode).

    Args:
        weights: a file written by :func:`save` (``unmask datasets train-synthetic``); None =
            the shipped weights. Read with ``torch.load(..., weights_only=True)``.

    Example:
        >>> model = load()
        >>> model.class_names, model.input_size
        (['disc', 'square', 'triangle', 'cross', 'ring', 'stripes'], (64, 64))
    """
    path = default_weights() if weights is None else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights: file not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"weights: {path} is not a synthetic CNN weights file ({WEIGHTS_FORMAT})")
    net = SyntheticCNN(num_classes=len(ckpt["classes"]))
    net.load_state_dict(ckpt["state_dict"])
    return _classifier(net, int(ckpt["input_size"]), list(ckpt["classes"]),
                       float(ckpt["mean"]), float(ckpt["std"]))
