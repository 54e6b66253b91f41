"""docs/metrics-catalogue.md lists every registered metric, with its kind, aliases and direction."""

from __future__ import annotations

import re
from pathlib import Path

import unmask.metrics  # noqa: F401  (registers every metric)
from unmask.registry import METRICS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "metrics-catalogue.md"
SECTION = "## Every registered metric, by family"


def rows() -> dict[str, list[str]]:
    text = PAGE.read_text(encoding="utf-8")
    assert SECTION in text, f"{PAGE.name} has no section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z0-9_]+)`(?: \((.*)\))?", cells[0])
        if match:
            assert match.group(1) not in out, f"{match.group(1)} is listed twice"
            aliases = re.findall(r"`([a-z0-9_]+)`", match.group(2) or "")
            out[match.group(1)] = [aliases, *cells[1:]]
    return out


def test_the_page_lists_exactly_the_registered_metrics():
    listed = rows()
    registered = {e.name for e in METRICS}
    assert not registered - set(listed), f"not on the page: {sorted(registered - set(listed))}"
    assert not set(listed) - registered, f"not registered: {sorted(set(listed) - registered)}"


def test_each_row_gives_the_registered_kind_aliases_and_direction():
    for name, (aliases, _family, kind, reference, defaults, better, where) in rows().items():
        entry = METRICS.get(name)
        assert kind == entry.kind, name
        assert sorted(aliases) == METRICS.aliases_of(name), name
        expected = "higher" if entry.build().higher_is_better else "lower"
        assert better == expected, name
        assert reference and defaults and where, name
