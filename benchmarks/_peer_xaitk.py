"""xaitk-saliency's RISEStack and SlidingWindowStack, served to run.py from the side venv.

Started by ``benchmarks/run.py`` through ``_sidevenv.Server`` (never by hand): it loads the same
model and image as run.py (``--threads``, eager network), then answers requests
``{"op": "rise" | "occlusion", ...}`` with one timed run each: ``wall_s`` (perf_counter around
``generate``), ``images`` (images through the model), ``output`` (the target's map, a nested
list) and ``peak_mb`` (VmHWM growth during the first run of each op, Linux only).

The black box gives xaitk the target's softmax probability, batched ``batch_size`` images per
forward, of uint8 HxWx3 images (xaitk's image type) scaled back to [0, 1].
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import time

import numpy as np
import torch
from _sidevenv import serve
from smqtk_classifier import ClassifyImage
from xaitk_saliency.impls.gen_image_classifier_blackbox_sal.rise import RISEStack
from xaitk_saliency.impls.gen_image_classifier_blackbox_sal.slidingwindow import SlidingWindowStack

import unmask


def _status_kib(name: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image", default="chelsea")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = unmask.load_model("efficientnet_lite0", execution="eager")
    for p in model.parameters():
        p.requires_grad_(False)
    x = unmask.load_image(unmask.example_image(args.image), size=224)
    with torch.inference_mode():
        target = int(model(x).argmax())
    image = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    class TargetProbability(ClassifyImage):
        def __init__(self, batch_size: int) -> None:
            self.batch_size, self.images = batch_size, 0

        def get_labels(self):
            return ["target"]

        def get_config(self):
            return {"batch_size": self.batch_size}

        def classify_images(self, img_iter):
            batch: list = []
            for img in img_iter:
                batch.append(img)
                if len(batch) == self.batch_size:
                    yield from self._flush(batch)
                    batch = []
            if batch:
                yield from self._flush(batch)

        def _flush(self, batch):
            t = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
            self.images += t.shape[0]
            with torch.inference_mode():
                p = torch.softmax(model(t), dim=1)[:, target]
            return [{"target": float(v)} for v in p]

    measured: set[str] = set()

    def handle(req: dict) -> dict:
        op = req["op"]
        if op == "rise":
            gen = RISEStack(
                req["masks"],
                req.get("s", 7),
                req.get("p", 0.5),
                seed=req.get("seed", 0),
                debiased=False,
            )
        elif op == "occlusion":
            gen = SlidingWindowStack((req["patch_size"],) * 2, (req["stride"],) * 2)
            if req.get("fill") is not None:
                gen.fill = [int(round(v)) for v in req["fill"]]
        else:
            raise ValueError(f"unknown op {op!r}")
        box = TargetProbability(req.get("batch_size", 16))
        first = op not in measured
        base = None
        if first:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                base = _status_kib("VmRSS")
            except OSError:
                base = None
        start = time.perf_counter()
        sal = gen.generate(image, box)
        wall = time.perf_counter() - start
        peak = None
        if first and base is not None:
            hwm = _status_kib("VmHWM")
            peak = None if hwm is None else (hwm - base) / 1024
            measured.add(op)
        return {
            "wall_s": wall,
            "images": box.images,
            "output": np.asarray(sal)[0].tolist(),
            "peak_mb": peak,
        }

    serve(handle, ready={"target": target, "version": md.version("xaitk-saliency")})


if __name__ == "__main__":
    main()
