"""Issue 19: TorchRay 1.0 and unmask's `extremal` side by side on ImageNet samples.

EfficientNet-Lite0, area 0.1, TorchRay's defaults but the given iterations; jitter on and/or off.
Prints the IoU of the top-10 % pixels of the two masks, their Pearson correlation, the share of
each one's top-10 % pixels within 21 px of the border, the preserve scores (logit; TorchRay's
mask scored with unmask's blur pyramid), and the means over the image.

    pip install --no-deps torchray
    python docs/extremal/side_by_side_imagenet.py n01440764_tench.JPEG,n01530575_brambling.JPEG 300 on,off
"""
import sys, time, warnings, csv
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
from torchray.attribution.extremal_perturbation import extremal_perturbation
import unmask
from unmask.explainers.extremal import BlurPyramid

root = "/work/shared/data/imagenet-samples/"
files = sys.argv[1].split(",")
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 300
jitters = [j == "on" for j in (sys.argv[3].split(",") if len(sys.argv) > 3 else ["on"])]
labels = {r["file"]: int(r["class_index"]) for r in csv.DictReader(open(root + "labels.csv"))}
model = unmask.load_model("efficientnet_lite0")
model_tr = unmask.load_model("efficientnet_lite0")

def top(m, frac=0.1):
    m = m.flatten(); k = int(round(frac * m.numel()))
    out = torch.zeros_like(m, dtype=torch.bool); out[m.topk(k).indices] = True
    return out

border = torch.ones(224, 224, dtype=torch.bool); border[21:-21, 21:-21] = False
border = border.flatten()
for f in files:
    x = unmask.load_image(root + f)
    c = labels[f]
    pyr = BlurPyramid(x)
    for jit in jitters:
        t0 = time.time()
        theirs, _ = extremal_perturbation(model_tr, x, c, areas=[0.1], max_iter=iters, jitter=jit)
        t1 = time.time()
        e = unmask.explain(model, x, "extremal", target=c, areas=0.1, steps=iters, jitter=jit)
        t2 = time.time()
        a, b = theirs[0, 0].flatten(), e.extras["masks"][0, 0].flatten()
        ta, tb = top(a), top(b)
        iou = float((ta & tb).sum() / (ta | tb).sum())
        r = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        with torch.no_grad():
            pa = float(model(pyr(theirs, torch.tensor([0])))[0, c])
            pb = float(e.extras["preserve_score"][0, 0]); full = float(model(x)[0, c])
        print(f"{f} jitter {jit}: IoU10 {iou:.2f} pearson {r:.2f} border share tr {float(border[ta].float().mean()):.2f} "
              f"unmask {float(border[tb].float().mean()):.2f} preserve tr {pa:.2f} unmask {pb:.2f} full {full:.2f} "
              f"area tr {float(a.mean()):.3f} unmask {float(b.mean()):.3f} ({t1-t0:.0f}s, {t2-t1:.0f}s)", flush=True)
