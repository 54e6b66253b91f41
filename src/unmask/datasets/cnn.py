"""The small CNN of the synthetic benchmark: its architecture, training loop and loader.

The loop and the weights files also serve the benchmark's small vision transformer
(:class:`unmask.datasets.vit.SyntheticViT`, the model ``"synthetic_vit"``): ``architecture=
"vit"`` in :func:`train`, :func:`fit` and :func:`load` (:data:`ARCHITECTURES`).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_images, check_positive, check_seed
from .._files import check_file, read_torch
from ..models import Classifier, register_model
from . import synthetic

__all__ = [
    "SyntheticCNN",
    "train",
    "fit",
    "accuracy",
    "load",
    "save",
    "default_weights",
    "WEIGHTS_FORMAT",
    "FEATURE_LAYER",
    "ARCHITECTURES",
]

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
            return [
                nn.Conv2d(
                    cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
                ),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]

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


@dataclass(frozen=True)
class Architecture:
    """A network of the benchmark: how to build it, its model name and default layer."""

    build: Callable[[int, int], nn.Module]  # (num_classes, size) -> network
    name: str
    feature_layer: str
    weights_format: str


def _vit(num_classes: int, size: int) -> nn.Module:
    from .vit import SyntheticViT

    return SyntheticViT(num_classes=num_classes, size=size)


#: The benchmark's networks by ``architecture`` name: ``"cnn"`` (:class:`SyntheticCNN`) and
#: ``"vit"`` (:class:`unmask.datasets.vit.SyntheticViT`).
ARCHITECTURES: dict[str, Architecture] = {
    "cnn": Architecture(
        lambda k, size: SyntheticCNN(num_classes=k), "synthetic_cnn", FEATURE_LAYER, WEIGHTS_FORMAT
    ),
    "vit": Architecture(_vit, "synthetic_vit", "blocks.3.norm1", "unmask.synthetic_vit/1"),
}


def _architecture(name: object) -> Architecture:
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(f"architecture: expected one of {', '.join(ARCHITECTURES)}, got {name!r}")
    return ARCHITECTURES[name]


def _classifier(
    net: nn.Module,
    size: int,
    classes: list[str],
    mean: float = MEAN,
    std: float = STD,
    architecture: str = "cnn",
) -> Classifier:
    arch = ARCHITECTURES[architecture]
    return Classifier(
        net.eval(),
        mean=(mean,) * 3,
        std=(std,) * 3,
        input_size=size,
        class_names=classes,
        name=arch.name,
        feature_layer=arch.feature_layer,
    )


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


def train(
    n_train: int = 12000,
    epochs: int = 12,
    seed: int = 0,
    *,
    size: int = synthetic.DEFAULT_SIZE,
    batch_size: int = 64,
    lr: float = 3e-3,
    n_val: int = 500,
    threads: int = 1,
    log: Callable[[str], None] | None = None,
    architecture: str = "cnn",
) -> tuple[Classifier, dict[str, Any]]:
    """Train :class:`SyntheticCNN` (or ``architecture``'s network) on ``n_train`` images of the
    ``"train"`` split.

    The images of split ``"train"`` (and ``n_val`` of split ``"val"``) with ``seed`` are
    generated once and handed to :func:`fit`, the training loop (see there for the optimiser,
    the augmentation and what makes it deterministic).

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
        architecture: a name of :data:`ARCHITECTURES` (``"cnn"`` or ``"vit"``).

    Returns:
        ``(model, info)``: the trained :class:`~unmask.Classifier` (eval mode) and a dict with
        the settings and the final ``val_accuracy``.
    """
    _architecture(architecture)
    for value, name in (
        (n_train, "n_train"),
        (epochs, "epochs"),
        (batch_size, "batch_size"),
        (n_val, "n_val"),
        (threads, "threads"),
    ):
        check_positive(value, name, integer=True)
    check_positive(lr, "lr")
    with _deterministic(threads):
        data = synthetic.generate(n_train, seed=seed, split="train", size=size)
        val = synthetic.generate(n_val, seed=seed, split="val", size=size)
    model, info = fit(
        data.images,
        data.labels,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        lr=lr,
        val=(val.images, val.labels),
        threads=threads,
        log=log,
        architecture=architecture,
    )
    return model, {"n_train": n_train, **info}


def fit(
    images: Tensor,
    labels: Tensor,
    epochs: int = 12,
    seed: int = 0,
    *,
    batch_size: int = 64,
    lr: float = 3e-3,
    val: tuple[Tensor, Tensor] | None = None,
    classes: Sequence[str] | None = None,
    threads: int = 1,
    log: Callable[[str], None] | None = None,
    architecture: str = "cnn",
) -> tuple[Classifier, dict[str, Any]]:
    """Train a fresh :class:`SyntheticCNN` (or ``architecture``'s network) on given images: the
    package's one training loop.

    Adam (weight decay 1e-4) with a one-cycle learning-rate schedule peaking at ``lr``, random
    horizontal and vertical flips (the class of every shape survives a flip), cross-entropy.
    The parameters' initialisation, the order of the batches and the flips are drawn from
    ``seed``; torch's deterministic algorithms are on and the thread count fixed, so the same
    arguments give the same weights on the same torch build. :func:`train` (the shipped model)
    and :func:`unmask.studies.roar` (retraining on ablated images) both call it.

    Args:
        images: (N, 3, H, W) in [0, 1], square.
        labels: (N,) class indices in ``0 .. len(classes) - 1``.
        epochs: passes over the images.
        seed: the seed of the initialisation, the batch order and the flips.
        batch_size: images per step.
        lr: the peak learning rate.
        val: ``(images, labels)`` whose accuracy is logged after each epoch, or None.
        classes: the class names (default :data:`unmask.datasets.synthetic.CLASSES`).
        threads: torch threads during training.
        log: a function receiving one line per epoch (e.g. ``print``), or None.
        architecture: a name of :data:`ARCHITECTURES` (``"cnn"`` or ``"vit"``).

    Returns:
        ``(model, info)``: the trained :class:`~unmask.Classifier` (eval mode) and a dict with
        the settings and the final ``val_accuracy`` (None without ``val``).

    Example:
        >>> data = synthetic.generate(8, seed=0, size=32)
        >>> model, info = fit(data.images, data.labels, epochs=1, batch_size=4)
        >>> model(data.images).shape, info["epochs"]
        (torch.Size([8, 6]), 1)
    """
    arch = _architecture(architecture)
    names = list(synthetic.CLASSES if classes is None else classes)
    images = check_images(images, "images", channels=3)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"images: expected square images, got {images.shape[-2]}x{images.shape[-1]}"
        )
    labels = _check_labels(labels, images.shape[0], len(names), "labels")
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != 2:
            raise TypeError(f"val: expected (images, labels) or None, got {type(val).__name__}")
        val_x = check_images(val[0], "val", channels=3)
        val_y = _check_labels(val[1], val_x.shape[0], len(names), "val")
    for value, name in ((epochs, "epochs"), (batch_size, "batch_size"), (threads, "threads")):
        check_positive(value, name, integer=True)
    check_positive(lr, "lr")
    check_seed(seed)
    say = log or (lambda _line: None)
    n_train = images.shape[0]
    size = int(images.shape[-1])
    with _deterministic(threads):
        torch.manual_seed(seed)
        net = arch.build(len(names), size)
        model = _classifier(net, size, names, architecture=architecture)
        gen = torch.Generator().manual_seed(seed)
        steps = epochs * math.ceil(n_train / batch_size)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        loss_fn = nn.CrossEntropyLoss()
        val_acc = None
        for epoch in range(epochs):
            net.train()
            order = torch.randperm(n_train, generator=gen)
            total = 0.0
            for i in range(0, n_train, batch_size):
                idx = order[i : i + batch_size]
                x = images[idx]
                flips = torch.rand(2, x.shape[0], generator=gen) < 0.5
                x = torch.where(flips[0, :, None, None, None], x.flip(-1), x)
                x = torch.where(flips[1, :, None, None, None], x.flip(-2), x)
                loss = loss_fn(model(x), labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * x.shape[0]
            net.eval()
            line = f"epoch {epoch + 1}/{epochs}: loss {total / n_train:.4f}"
            if val is not None:
                val_acc = accuracy(model, val_x, val_y)
                line += f", val accuracy {val_acc:.4f}"
            say(line)
    info = {
        "epochs": epochs,
        "seed": seed,
        "size": size,
        "batch_size": batch_size,
        "lr": lr,
        "val_accuracy": val_acc,
        "torch": str(torch.__version__),
        "threads": threads,
        "architecture": architecture,
    }
    return model.eval(), info


def _check_labels(labels: object, n: int, num_classes: int, name: str) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name}: expected a tensor of class indices, got {type(labels).__name__}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or tuple(
        labels.shape
    ) != (n,):
        raise ValueError(
            f"{name}: expected ({n},) integer class indices, got "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name}: class indices must be in 0..{num_classes - 1}, got "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return labels.long()


def _architecture_of(net: nn.Module) -> str | None:
    from .vit import SyntheticViT

    if isinstance(net, SyntheticCNN):
        return "cnn"
    if isinstance(net, SyntheticViT):
        return "vit"
    return None


def save(model: Classifier, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a trained synthetic CNN or ViT) as a weights file :func:`load` reads."""
    architecture = _architecture_of(model.net) if isinstance(model, Classifier) else None
    if architecture is None:
        raise TypeError(
            "model: expected the Classifier of a SyntheticCNN or SyntheticViT, got "
            f"{type(model).__name__}"
        )
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"out: {path} is a directory; give a file name such as weights.pt")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"out: the folder {path.parent} does not exist")
    state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
    size = int(model.input_size[0]) if model.input_size else synthetic.DEFAULT_SIZE
    torch.save(
        {
            "format": ARCHITECTURES[architecture].weights_format,
            "state_dict": state,
            "classes": list(model.class_names),
            "input_size": size,
            "mean": MEAN,
            "std": STD,
            "info": dict(info or {}),
        },
        path,
    )
    return path


def default_weights(architecture: str = "cnn") -> Path:
    """The shipped weights file of the ``"synthetic_cnn"`` (or ``"synthetic_vit"``) model."""
    name = _architecture(architecture).name
    return Path(str(resources.files("unmask.datasets") / "data" / f"{name}.pt"))


def load(weights: str | Path | None = None, architecture: str = "cnn") -> Classifier:
    """The trained synthetic CNN (or ViT) as a :class:`~unmask.Classifier` (eval mode).

    Args:
        weights: a file written by :func:`save` (``unmask datasets train-synthetic``); None =
            the shipped weights. Read with ``torch.load(..., weights_only=True)``.
        architecture: ``"cnn"`` (the model ``"synthetic_cnn"``) or ``"vit"``
            (``"synthetic_vit"``); the file must hold that network.

    Example:
        >>> model = load()
        >>> model.class_names, model.input_size
        (['disc', 'square', 'triangle', 'cross', 'ring', 'stripes'], (64, 64))
        >>> load(architecture="vit").feature_layer
        'blocks.3.norm1'
    """
    arch = _architecture(architecture)
    path = default_weights(architecture) if weights is None else check_file(weights, "weights")
    ckpt = read_torch(path, "weights")
    if not isinstance(ckpt, dict) or ckpt.get("format") != arch.weights_format:
        raise ValueError(
            f"weights: {path} is not a {arch.name} weights file ({arch.weights_format})"
        )
    try:
        net = arch.build(len(ckpt["classes"]), int(ckpt["input_size"]))
        net.load_state_dict(ckpt["state_dict"])
        return _classifier(
            net,
            int(ckpt["input_size"]),
            [str(c) for c in ckpt["classes"]],
            float(ckpt["mean"]),
            float(ckpt["std"]),
            architecture=architecture,
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise ValueError(
            f"weights: {path} is a damaged {arch.name} weights file ({type(exc).__name__}: {why})"
        ) from None


def _build(weights: str | Path | None = None, **_: object) -> Classifier:
    return load(weights)


register_model(
    "synthetic_cnn",
    _build,
    "small CNN of the synthetic shapes benchmark (unmask.datasets), 6 classes, 64x64 (embedded)",
)


def _build_vit(weights: str | Path | None = None, **_: object) -> Classifier:
    return load(weights, architecture="vit")


register_model(
    "synthetic_vit",
    _build_vit,
    "small ViT of the synthetic shapes benchmark (8x8 patches + class token), 6 classes, "
    "64x64 (embedded)",
)
