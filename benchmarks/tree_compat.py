"""Do the original CWOX reader and ours cut a tree written by unmask the same way?

Loads the original's ``CWOX/apply_hltm.py`` from a path you give (a checkout of
github.com/vaynexie/CWOX; nothing of it is copied here), writes a tree learned by
:func:`unmask.contrastive.learn_tree` from the published documents, and compares
``apply_hltm(cut, path).get_cluster(top_k)`` with ``LabelTree.clusters(top_k, cut)`` on random
top-k sets at every cut level; also on the published ResNet-50 tree.

    python benchmarks/tree_compat.py --original /path/to/CWOX/CWOX/apply_hltm.py
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DOCS = Path("/work/shared/data/cwox/labels_resnet50.json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--original", required=True, help="path to the original apply_hltm.py")
    ap.add_argument("--documents", default=str(DOCS))
    ap.add_argument("--trials", type=int, default=300, help="random top-k sets per cut level")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("apply_hltm", args.original)
    original = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(original)  # type: ignore[union-attr]

    from unmask.contrastive import learn_tree, load_tree, read_documents
    from unmask.contrastive import trees as trees_module

    with tempfile.TemporaryDirectory() as tmp:
        learned = Path(tmp) / "learned.json"
        learn_tree(read_documents(args.documents), num_classes=1000, progress=False).save(learned)
        published = Path(trees_module.__file__).parent / "data" / "ResNet50.json"
        for name, path in (("learned (method='average')", learned), ("published", published)):
            ours = load_tree(path)
            rng = random.Random(0)
            bad = total = 0
            for cut in range(ours.depth):
                theirs = original.apply_hltm(cut, str(path))
                for _ in range(args.trials):
                    top = rng.sample(sorted(ours.classes), rng.randint(1, 10))
                    bad += theirs.get_cluster(top) != ours.clusters(top, cut)
                    total += 1
            print(
                f"{name}: {ours.depth} levels, {total} top-k sets over all cut levels, "
                f"{bad} mismatches"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
