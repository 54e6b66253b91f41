"""The result store of a benchmark run: one SQLite file (WAL), nothing lost, nothing twice.

Tables:

* ``meta``: the format tag, the config (JSON) and its hash; a store holds one config only.
* ``sessions``: one row per start or resume: unmask / torch / Python versions, the git commit,
  the machine, the executor, the command line.
* ``files``: the data set's files in order (what "pending" counts against).
* ``units``: one row per (file, method run): the explanation's :func:`unmask.result_key`, the
  image digest, the target, the method's resolved spec, ``done`` or ``failed`` with its
  message, seconds, and the saliency map (and the relevance map when it differs) as
  zlib-compressed float32 blobs.
* ``results``: one row per (file, method run, metric): the metric key (result key + metric
  name + params), the value, extra data (a deletion curve, per-alpha errors) as JSON, the map
  read, ``done`` or ``failed``.

A unit and all its metric rows are written in ONE transaction, so a process killed at any
moment leaves each unit either complete or absent; a restart skips what is there
(:meth:`Store.done_units`) and a unit is never written twice (its primary key).
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Target

__all__ = ["Store", "UnitRecord", "ResultRecord", "encode_map", "decode_map", "FORMAT", "SCHEMA"]

FORMAT = "unmask-bench"
SCHEMA = 1
_MAGIC = b"SQLite format 3\x00"

_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT NOT NULL, argv TEXT,
    executor TEXT, unmask TEXT, torch TEXT, python TEXT, git_commit TEXT, machine TEXT);
CREATE TABLE files (idx INTEGER PRIMARY KEY, file TEXT NOT NULL UNIQUE);
CREATE TABLE units (file TEXT NOT NULL, run TEXT NOT NULL, status TEXT NOT NULL, key TEXT,
    image TEXT, target TEXT, spec TEXT, error TEXT, seconds REAL, shape TEXT, saliency BLOB,
    relevance BLOB, session INTEGER, PRIMARY KEY (file, run));
CREATE TABLE results (file TEXT NOT NULL, run TEXT NOT NULL, metric TEXT NOT NULL, key TEXT,
    status TEXT NOT NULL, value REAL, data TEXT, map TEXT, error TEXT,
    PRIMARY KEY (file, run, metric));
CREATE INDEX results_key ON results (key);
"""


def encode_map(saliency: np.ndarray) -> tuple[bytes, str]:
    """A map (H, W) / (1, 1, H, W) as (zlib-compressed float32 bytes, shape JSON)."""
    arr = np.ascontiguousarray(np.asarray(saliency, dtype="<f4"))
    return zlib.compress(arr.tobytes(), 6), json.dumps(list(arr.shape))


def decode_map(blob: bytes, shape: str) -> np.ndarray:
    """The inverse of :func:`encode_map`."""
    return np.frombuffer(zlib.decompress(blob), dtype="<f4").reshape(json.loads(shape)).copy()


@dataclass
class ResultRecord:
    """One metric value of a unit (``status`` ``"done"`` or ``"failed"``)."""

    metric: str
    key: str | None
    status: str
    value: float | None = None
    data: Any = None
    map: str | None = None
    error: str | None = None


@dataclass
class UnitRecord:
    """What a worker returns for one (file, method run)."""

    file: str
    run: str
    status: str
    key: str | None = None
    image: str | None = None
    target: Target = None
    spec: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None
    saliency: np.ndarray | None = None
    relevance: Any = None
    results: list[ResultRecord] = field(default_factory=list)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _machine() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Store:
    """A benchmark's SQLite result store.

    Open with :meth:`create_or_resume` (a run) or :meth:`open` (read: status, report).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "run.sqlite")
        >>> s = Store.create_or_resume(path, {"name": "t"}, "abc")
        >>> s.write_unit(UnitRecord("a.png", "occlusion", "done", key="k",
        ...              saliency=np.zeros((2, 2)),
        ...              results=[ResultRecord("deletion", "k2", "done", 0.5)]))
        True
        >>> s.done_units(), s.values("deletion")
        ({('a.png', 'occlusion')}, {('a.png', 'occlusion'): 0.5})
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path, self.conn = path, conn

    # ------------------------------------------------------------------------- opening
    @staticmethod
    def _check_file(path: Path, name: str) -> None:
        if path.is_dir():
            raise IsADirectoryError(f"{name}: {str(path)!r} is a directory, expected a store file")
        if path.is_file() and path.stat().st_size > 0:
            with path.open("rb") as f:
                head = f.read(16)
            if head != _MAGIC:
                raise ValueError(
                    f"{name}: {str(path)!r} is not an unmask bench store (not an "
                    "SQLite file); nothing was changed. Give another --store path"
                )

    @staticmethod
    def _connect(path: Path, readonly: bool, name: str) -> sqlite3.Connection:
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            else:
                conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"{name}: {str(path)!r} is not a readable SQLite store ({exc}); nothing was changed"
            ) from None
        return conn

    @classmethod
    def _check_format(cls, conn: sqlite3.Connection, path: Path, name: str) -> dict[str, str]:
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                return {}
            meta = (
                dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if "meta" in tables
                else {}
            )
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"{name}: {str(path)!r} is corrupt ({exc}); nothing was changed"
            ) from None
        if meta.get("format") != FORMAT or not {"units", "results", "sessions", "files"} <= tables:
            raise ValueError(
                f"{name}: {str(path)!r} is an SQLite file of another program, not an "
                "unmask bench store; nothing was changed. Give another --store path"
            )
        if int(meta.get("schema", "0")) != SCHEMA:
            raise ValueError(
                f"{name}: {str(path)!r} has store schema {meta.get('schema')}; this "
                f"unmask reads schema {SCHEMA}"
            )
        return meta

    @classmethod
    def open(cls, path: str | Path, name: str = "RUN") -> Store:
        """Open an existing store to read it (status, report)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such store file {str(path)!r}")
        cls._check_file(path, name)
        conn = cls._connect(path, readonly=True, name=name)
        if not cls._check_format(conn, path, name):
            raise ValueError(
                f"{name}: {str(path)!r} is an empty SQLite file, not an unmask bench store"
            )
        return cls(path, conn)

    @staticmethod
    def _mismatch(
        meta: dict[str, str], config: dict[str, Any], config_hash: str, path: Path, name: str
    ) -> None:
        if meta and meta["config_hash"] != config_hash:
            old = json.loads(meta["config"])
            diff = [k for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)]
            raise ValueError(
                f"{name}: {str(path)!r} holds a run of another config (it differs in: "
                f"{', '.join(diff) or 'normalisation'}); a store never mixes configs. Start a new "
                f"run with another --store path, or delete that file to start over"
            )

    @classmethod
    def check_path(
        cls, path: str | Path, config: dict[str, Any], config_hash: str, name: str = "--store"
    ) -> None:
        """Raise what :meth:`create_or_resume` would raise, without creating anything."""
        path = Path(path)
        cls._check_file(path, name)
        if not path.is_file() or path.stat().st_size == 0:
            return
        conn = cls._connect(path, readonly=True, name=name)
        try:
            cls._mismatch(cls._check_format(conn, path, name), config, config_hash, path, name)
        finally:
            conn.close()

    @classmethod
    def create_or_resume(
        cls, path: str | Path, config: dict[str, Any], config_hash: str, name: str = "--store"
    ) -> Store:
        """Open ``path`` for a run of ``config``: create it, or resume it if it holds the same
        config. A store of another config, a foreign or corrupt file: ValueError, untouched."""
        path = Path(path)
        cls._check_file(path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = cls._connect(path, readonly=False, name=name)
        try:
            meta = cls._check_format(conn, path, name)
            cls._mismatch(meta, config, config_hash, path, name)
        except ValueError:
            conn.close()
            raise
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a killed process
        if not meta:
            with _transaction(conn):
                for statement in _TABLES.strip().split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("schema", str(SCHEMA)),
                        ("config_hash", config_hash),
                        ("config", json.dumps(config, sort_keys=True)),
                        ("created", _now()),
                    ],
                )
        return cls(path, conn)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------------- writing
    def start_session(self, executor: str, argv: Sequence[str] | None = None) -> int:
        """Record a start / resume with the versions, the commit and the machine."""
        import torch

        from .. import __version__

        with _transaction(self.conn):
            cur = self.conn.execute(
                "INSERT INTO sessions "
                "(started, argv, executor, unmask, torch, python, git_commit, machine) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _now(),
                    json.dumps(list(argv if argv is not None else sys.argv)),
                    executor,
                    __version__,
                    torch.__version__,
                    platform.python_version(),
                    _git_commit(),
                    json.dumps(_machine()),
                ),
            )
        self.session = int(cur.lastrowid or 0)
        return self.session

    def set_files(self, files: Iterable[str]) -> None:
        """Record the data set's files (new ones appended; known ones keep their index)."""
        with _transaction(self.conn):
            known = {f for (f,) in self.conn.execute("SELECT file FROM files")}
            start = self.conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM files").fetchone()[0]
            new = [f for f in files if f not in known]
            self.conn.executemany(
                "INSERT INTO files VALUES (?, ?)", [(start + i, f) for i, f in enumerate(new)]
            )

    def write_unit(self, unit: UnitRecord) -> bool:
        """Store a unit and its metric rows in one transaction; False if it was already stored."""
        sal = rel = shape = None
        if unit.saliency is not None:
            sal, shape = encode_map(unit.saliency)
            if unit.relevance is not None:
                rel, _ = encode_map(unit.relevance)
        try:
            with _transaction(self.conn):
                self.conn.execute(
                    "INSERT INTO units "
                    "(file, run, status, key, image, target, spec, error, seconds, shape, "
                    "saliency, relevance, session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        unit.file,
                        unit.run,
                        unit.status,
                        unit.key,
                        unit.image,
                        json.dumps(unit.target),
                        json.dumps(unit.spec, sort_keys=True) if unit.spec is not None else None,
                        unit.error,
                        unit.seconds,
                        shape,
                        sal,
                        rel,
                        getattr(self, "session", None),
                    ),
                )
                self.conn.executemany(
                    "INSERT INTO results (file, run, metric, key, status, value, data, map, error) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            unit.file,
                            unit.run,
                            r.metric,
                            r.key,
                            r.status,
                            r.value,
                            json.dumps(r.data) if r.data is not None else None,
                            r.map,
                            r.error,
                        )
                        for r in unit.results
                    ],
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def forget_failed(self) -> int:
        """Delete every unit that failed or has a failed metric (``--retry-failed``); returns
        how many. Done units are kept."""
        with _transaction(self.conn):
            bad = self.conn.execute(
                "SELECT file, run FROM units WHERE status = 'failed' UNION "
                "SELECT file, run FROM results WHERE status = 'failed'"
            ).fetchall()
            self.conn.executemany("DELETE FROM results WHERE file = ? AND run = ?", bad)
            self.conn.executemany("DELETE FROM units WHERE file = ? AND run = ?", bad)
        return len(bad)

    # ------------------------------------------------------------------------- reading
    @property
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.meta["config"])

    def files(self) -> list[str]:
        return [f for (f,) in self.conn.execute("SELECT file FROM files ORDER BY idx")]

    def sessions(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM sessions ORDER BY id")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur]

    def done_units(self, include_failed: bool = True) -> set[tuple[str, str]]:
        """(file, run) of the stored units (failed ones too unless asked)."""
        sql = "SELECT file, run FROM units" + ("" if include_failed else " WHERE status = 'done'")
        return {(f, r) for f, r in self.conn.execute(sql)}

    def status(self) -> dict[str, dict[str, int]]:
        """Per method run: ``done`` / ``failed`` / ``pending`` units (against the file list)."""
        n = self.conn.execute("SELECT count(*) FROM files").fetchone()[0]
        runs = [m["label"] for m in self.config["methods"]]
        out = {r: {"done": 0, "failed": 0, "pending": n} for r in runs}
        failed_metrics = {
            (f, r)
            for f, r in self.conn.execute(
                "SELECT DISTINCT file, run FROM results WHERE status = 'failed'"
            )
        }
        for file, run, status in self.conn.execute("SELECT file, run, status FROM units"):
            if run not in out:
                continue
            bucket = "failed" if status == "failed" or (file, run) in failed_metrics else "done"
            out[run][bucket] += 1
            out[run]["pending"] -= 1
        return out

    def units(self, with_maps: bool = False) -> list[dict[str, Any]]:
        cols = "file, run, status, key, image, target, spec, error, seconds, shape" + (
            ", saliency, relevance" if with_maps else ""
        )
        cur = self.conn.execute(f"SELECT {cols} FROM units ORDER BY file, run")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def results(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT file, run, metric, key, status, value, data, map, error "
            "FROM results ORDER BY file, run, metric"
        )
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur]
        for r in rows:
            r["data"] = json.loads(r["data"]) if r["data"] else None
        return rows

    def values(self, metric: str) -> dict[tuple[str, str], float]:
        """(file, run) -> value of one metric, done rows only."""
        return {
            (f, r): v
            for f, r, v in self.conn.execute(
                "SELECT file, run, value FROM results WHERE metric = ? AND status = 'done'",
                (metric,),
            )
        }

    def map(self, file: str, run: str, which: str = "saliency") -> np.ndarray | None:
        """The stored saliency (or relevance: falls back to saliency) map (H, W) of a unit."""
        row = self.conn.execute(
            "SELECT shape, saliency, relevance FROM units WHERE file = ? AND run = ?", (file, run)
        ).fetchone()
        if row is None or row[1] is None:
            return None
        blob = row[2] if which == "relevance" and row[2] is not None else row[1]
        return decode_map(blob, row[0])

    def dump(self) -> list[tuple]:
        """Every unit and result row (maps as bytes), sorted: what two runs are compared on."""
        units = self.conn.execute(
            "SELECT file, run, status, key, image, target, spec, error, shape, "
            "saliency, relevance FROM units ORDER BY file, run"
        ).fetchall()
        results = self.conn.execute(
            "SELECT file, run, metric, key, status, value, data, map, error "
            "FROM results ORDER BY file, run, metric"
        ).fetchall()
        return units + results


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
