"""The README's Python examples run as written (doctest); its set-up commands are CI's."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write chelsea.png
    result = doctest.testfile(
        str(ROOT / "README.md"),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted >= 8 and result.failed == 0
    assert (tmp_path / "chelsea.png").stat().st_size > 10_000


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "unmask explain --example coffee" in commands[0] and "torch==2.13.0" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci
