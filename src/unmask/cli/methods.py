"""`unmask methods`: list the registered explanation methods."""

from __future__ import annotations

import argparse
import json
from typing import Any

COMMAND = "methods"
HELP = "List the explanation methods (with aliases)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON: each method's family, aliases, hyperparameters (type, default, "
        "bounds at 224 x 224, choices), CLI defaults and cost in model evaluations at 224 x 224",
    )


def run(args: argparse.Namespace) -> int:
    from ..api import list_methods
    from ..params import params_of
    from ..registry import METHODS

    rows: list[dict[str, Any]] = []
    for name in list_methods():
        entry = METHODS.get(name)
        rows.append(
            {
                "name": name,
                "aliases": METHODS.aliases_of(name),
                "summary": entry.summary,
                "family": entry.family,
                "params": [p.to_json(224) for p in params_of(entry).values() if p.kind != "hidden"],
                "cli_defaults": entry.cli,
                # model evaluations per image at 224 x 224 (None: it depends on the model)
                "cost_224": None if entry.cost_needs_model else entry.cost(entry.cli, 224),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            alias = f" (alias: {', '.join(r['aliases'])})" if r["aliases"] else ""
            print(f"{r['name']:<{width}}  {r['summary']}{alias}")
    return 0
