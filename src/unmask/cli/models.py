"""`unmask models`: list the loadable models."""

from __future__ import annotations

import argparse
import json

COMMAND = "models"
HELP = "List the models that load offline."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..models import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
    else:
        width = max(map(len, models))
        for name, desc in models.items():
            print(f"{name:<{width}}  {desc}")
        print(
            f"{'tv:<arch>':<{width}}  "
            "a torchvision architecture with --weights FILE (needs torchvision)"
        )
    return 0
