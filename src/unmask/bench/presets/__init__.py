"""Preset benchmarks: TOML files shipped with unmask, run as ``unmask bench run preset:NAME``.

Each preset reproduces one of the seed studies on what exists here (the embedded models, the
ImageNet samples or any folder given with ``--data``); its header comment says what it
reproduces and what differs from the paper.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRESETS", "preset_path"]

_HERE = Path(__file__).resolve().parent


def _summary(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


#: name -> one-line summary (the first comment line of the TOML file).
PRESETS: dict[str, str] = {p.stem: _summary(p) for p in sorted(_HERE.glob("*.toml"))}


def preset_path(name: str) -> Path:
    """The TOML file of preset ``name``; ValueError listing the presets otherwise."""
    if name not in PRESETS:
        raise ValueError(f"preset: unknown preset {name!r}; expected one of: {', '.join(PRESETS)}")
    return _HERE / f"{name}.toml"
