"""`unmask methods`: list the registered explanation methods."""

from __future__ import annotations

import argparse
import json

COMMAND = "methods"
HELP = "List the explanation methods (with aliases)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..api import list_methods
    from ..registry import METHODS

    rows = [
        {"name": n, "aliases": METHODS.aliases_of(n), "summary": METHODS.get(n).summary}
        for n in list_methods()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            alias = f" (alias: {', '.join(r['aliases'])})" if r["aliases"] else ""
            print(f"{r['name']:<{width}}  {r['summary']}{alias}")
    return 0
