"""Working memory of the embedded model per image: the constants behind ``unmask._limits``.

Runs one forward pass (without gradients) or one forward + backward pass of N random 224²
images through EfficientNet-Lite0 in a fresh process and prints the growth of the peak
resident memory (``resource.getrusage``), in total and per image. ``unmask._limits`` uses
about 30 bytes of activations per input byte without gradients and 160 with, which covers
what this prints (per image: 3 x 224 x 224 x 4 bytes = 0.6 MB of input).

    python benchmarks/activation_memory.py 16 0     # 16 images, no gradients
    python benchmarks/activation_memory.py 8 1      # 8 images, with gradients

Measured here (2 CPU cores, torch 2.13): 16 / 64 images without gradients 18.1 / 16.6 MB per
image; 8 / 32 images with gradients 101 / 85 MB per image.
"""

from __future__ import annotations

import resource
import sys

import torch


def main(n: int, grad: bool) -> None:
    import unmask

    torch.set_num_threads(1)
    model = unmask.load_model()
    x = torch.rand(n, 3, 224, 224, requires_grad=grad)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if grad:
        model(x).sum().backward()
    else:
        with torch.no_grad():
            model(x)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KB -> MB
    print(f"{n} images, gradients={grad}: {grown:.0f} MB, {grown / n:.1f} MB per image")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 16, len(sys.argv) > 2 and sys.argv[2] == "1")
