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
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the same as a Markdown table (docs/methods.md is this output)",
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
    elif args.markdown:
        print(markdown(rows), end="")
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            alias = f" (alias: {', '.join(r['aliases'])})" if r["aliases"] else ""
            print(f"{r['name']:<{width}}  {r['summary']}{alias}")
    return 0


def _param(p: dict[str, Any]) -> str:
    text = f"`{p['name']}`={json.dumps(p['default'])}"
    if p["choices"]:
        text += " {" + ", ".join(p["choices"]) + "}"
    elif p["min"] is not None:
        text += f" [{p['min']}, {p['max']}]"
    return text


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of ``unmask methods --json`` as a Markdown table (one line per method)."""
    lines = [
        "| method | family | hyperparameters: default, [bounds at 224 × 224] or {choices} "
        "| model evaluations per image at 224 × 224 (CLI defaults) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        name = f"`{r['name']}`" + "".join(f" (`{a}`)" for a in r["aliases"])
        params = "; ".join(_param(p) for p in r["params"]) or "none"
        cost = "depends on the model's layer" if r["cost_224"] is None else f"{r['cost_224']:,}"
        if r["cli_defaults"]:
            given = ", ".join(f"{k}={v}" for k, v in r["cli_defaults"].items())
            cost += f" (CLI: {given})"
        lines.append(f"| {name} | {r['family']} | {params} | {cost} |")
    return "\n".join(lines) + "\n"
