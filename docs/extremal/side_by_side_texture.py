"""Issue 19: TorchRay 1.0 and unmask's `extremal` side by side on a texture box at 224².

Class 0's logit is the texture energy (mean squared deviation from gray) inside the box of a
gray image carrying a checkerboard there; nine other classes are flat at 0. TorchRay's defaults
but the given iterations, jitter on, areas 0.05 / 0.1 / 0.2 optimised together. Prints, per area
and implementation, the share of the top-5 % mask pixels inside the box, the box's mean mask,
the mean inside / outside ratio and the mean over the image.

    pip install --no-deps torchray
    python docs/extremal/side_by_side_texture.py 40,120,104,184 300 4   # box, iterations, cell
"""
import sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from torch import nn
from torchray.attribution.extremal_perturbation import extremal_perturbation
import unmask
from unmask.models import Classifier

class Texture(nn.Module):
    def __init__(self, box, classes=10, gain=1.0):
        super().__init__()
        self.box, self.classes, self.gain = box, classes, gain
        self.dummy = nn.Parameter(torch.zeros(()))
    def forward(self, x):
        t, l, b, r = self.box
        e = ((x[..., t:b, l:r] - 0.5) ** 2).mean((1, 2, 3)) * self.gain
        out = torch.zeros(x.shape[0], self.classes, dtype=x.dtype, device=x.device) + 0 * self.dummy
        return torch.cat([e[:, None], out[:, 1:]], 1)

def image(box, size=224, cell=4, amp=0.5):
    x = torch.full((1, 3, size, size), 0.5)
    t, l, b, r = box
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    chk = (((yy // cell) + (xx // cell)) % 2).float() * 2 - 1
    x[..., t:b, l:r] = (0.5 + amp * chk)[t:b, l:r]
    return x

def share(m, box, frac):
    m = m.flatten()
    k = int(round(frac * m.numel()))
    idx = m.topk(k).indices
    inside = torch.zeros(224, 224, dtype=torch.bool); t, l, b, r = box; inside[t:b, l:r] = True
    return float(inside.flatten()[idx].float().mean())



box = tuple(int(v) for v in sys.argv[1].split(","))
iters = int(sys.argv[2]); cell = int(sys.argv[3]) if len(sys.argv) > 3 else 4
areas = [0.05, 0.1, 0.2]
model = Classifier(Texture(box), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=None, class_names=[str(i) for i in range(10)])
x = image(box, cell=cell)
inside = torch.zeros(224, 224, dtype=torch.bool); t, l, b, r = box; inside[t:b, l:r] = True
t0 = time.time()
theirs, _ = extremal_perturbation(model, x, 0, areas=areas, max_iter=iters, jitter=True)
t1 = time.time()
e = unmask.explain(model, x, "extremal", target=0, areas=areas, steps=iters, jitter=True)
t2 = time.time()
print("box", box, "iters", iters, "cell", cell, f"times {t1-t0:.0f}s {t2-t1:.0f}s")
for i, a in enumerate(areas):
    for name, m in (("torchray", theirs[i, 0]), ("unmask", e.extras["masks"][0, i])):
        f = m.flatten(); k = int(0.05 * f.numel())
        share = float(inside.flatten()[f.topk(k).indices].float().mean())
        print(f"  area {a} {name:8s}: top5% share {share:.2f} cover {float(m[inside].mean()):.2f} "
              f"ratio {float(m[inside].mean() / m[~inside].mean()):.1f} image area {float(m.mean()):.3f}")
    print(f"  unmask preserve {float(e.extras['preserve_score'][0, i]):.4f}")
