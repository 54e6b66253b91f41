"""`unmask bench` on the command line: bad input is one line and exit 2, nothing stored is lost."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from unmask.bench import Store
from unmask.cli import main


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


@pytest.fixture
def done(tiny: Path, tmp_path: Path, capsys) -> Path:
    store = tmp_path / "run.sqlite"
    assert (
        main(
            [
                "bench",
                "run",
                str(tiny),
                "--allow-code",
                "--store",
                str(store),
                "--limit",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    return store


def test_status_presets_and_run_summary(done: Path, capsys) -> None:
    assert main(["bench", "status", str(done)]) == 0
    out = capsys.readouterr().out
    assert "tiny: 6 images, 1 session(s)" in out
    assert out.splitlines()[2].split() == ["occlusion", "2", "0", "4"]
    assert main(["bench", "presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("generative", "figure4", "saliency-maps-metrics"))
    assert main(["bench", "presets", "figure4"]) == 0
    assert 'method = "shearletx"' in capsys.readouterr().out


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            ('method = "rise"', 'method = "rice"'),
            "methods[1].method: unknown method 'rice'; expected one of:",
        ),
        (
            ("masks = 100", "maks = 100"),
            "methods[1].params.maks: not a hyperparameter of method 'rise'",
        ),
        (
            ('metric = "deletion"', 'metric = "delete"'),
            "metrics[0].metric: unknown metric 'delete'",
        ),
        (('path = "data"', 'path = "nowhere"'), "data.path: no such directory"),
    ],
)
def test_bad_config_exits_2_before_any_work(
    tiny: Path, tmp_path: Path, capsys, edit, match
) -> None:
    tiny.write_text(tiny.read_text().replace(*edit))
    store = tmp_path / "new.sqlite"
    assert main(["bench", "run", str(tiny), "--allow-code", "--store", str(store)]) == 2
    assert match in _err(capsys)
    assert not store.exists()


def test_corrupt_foreign_and_other_config_stores_are_refused(
    done: Path, tiny: Path, tmp_path: Path, capsys
) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 10)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    before = {p: p.read_bytes() for p in (junk, foreign)}
    for path, match in (
        (junk, "is not an unmask bench store (not an SQLite file)"),
        (foreign, "an SQLite file of another program"),
    ):
        assert main(["bench", "run", str(tiny), "--allow-code", "--store", str(path)]) == 2
        assert match in _err(capsys)
        assert main(["bench", "status", str(path)]) == 2
        assert match in _err(capsys)
        assert path.read_bytes() == before[path]
    rows = Store.open(done).dump()
    tiny.write_text(tiny.read_text().replace("max_steps = 8", "max_steps = 4"))
    assert main(["bench", "run", str(tiny), "--allow-code", "--store", str(done)]) == 2
    err = _err(capsys)
    assert (
        "holds a run of another config (it differs in: metrics)" in err and "another --store" in err
    )
    assert Store.open(done).dump() == rows


def test_report_command(done: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "rep"
    assert main(["bench", "report", str(done), "--out", str(out), "--bootstrap", "50"]) == 0
    assert (out / "index.html").is_file() and (out / "results.csv").is_file()
    assert main(["bench", "report", str(tmp_path / "none.sqlite")]) == 2
    assert "no such store file" in _err(capsys)


# ------------------------------------------------- a config from elsewhere is data (issue 25)


def test_a_config_runs_no_code_unless_allowed(tiny: Path, tmp_path: Path, capsys, monkeypatch):
    from unmask.bench import load_plan

    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    store = tmp_path / "s.sqlite"
    # the tiny config's model is unmask.testing:region_model: code, refused by default
    assert main(["bench", "run", str(tiny), "--store", str(store)]) == 2
    err = _err(capsys)
    assert err.startswith("unmask: error: model.name: 'unmask.testing:region_model'")
    assert "--allow-code" in err and not store.exists()
    with pytest.raises(ValueError, match="^model.name: .*allow_code=True"):
        load_plan(tiny)
    # os:system is never imported nor called, --allow-code or not, when the config is refused
    tiny.write_text(tiny.read_text().replace("unmask.testing:region_model", "os:system"))
    assert main(["bench", "run", str(tiny), "--store", str(store)]) == 2
    assert "model.name: 'os:system' imports and calls" in _err(capsys)
    assert calls == [] and not store.exists()


def test_torchscript_removals_are_code(tiny: Path, tmp_path: Path, capsys) -> None:
    program = tmp_path / "program.pt"  # never opened: refused before anything is built
    text = tiny.read_text().replace("unmask.testing:region_model", "synthetic_cnn")
    tiny.write_text(text.replace("seeds = [0, 1]", f'removals = ["torchscript:{program}"]', 1))
    assert main(["bench", "run", str(tiny), "--store", str(tmp_path / "s.sqlite")]) == 2
    err = _err(capsys)
    assert "methods[1].removals[0]:" in err and "TorchScript" in err and "--allow-code" in err


def test_the_default_store_stays_in_the_current_folder(tiny: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    for name in ("../../../x", "/tmp/x", "..", ".hidden", "sub/x"):
        tiny.write_text(tiny.read_text().replace('name = "tiny"', f'name = "{name}"', 1))
        cwd = os.getcwd()
        try:
            os.chdir(work)
            assert main(["bench", "run", str(tiny), "--allow-code", "--limit", "1"]) == 2
        finally:
            os.chdir(cwd)
        err = _err(capsys)
        assert err.startswith(f"unmask: error: name: {name!r} is not a plain file name"), err
        assert "--store" in err
        tiny.write_text(tiny.read_text().replace(f'name = "{name}"', 'name = "tiny"', 1))
    assert not list(tmp_path.rglob("*.sqlite"))
    # the user's own --store is written where the user says
    store = tmp_path / "elsewhere.sqlite"
    tiny.write_text(tiny.read_text().replace('name = "tiny"', 'name = "../../../x"', 1))
    args = ["bench", "run", str(tiny), "--allow-code", "--store", str(store), "--limit", "1"]
    assert main([*args, "--no-progress"]) == 0
    assert store.exists()
