"""Local files named by the user: checked before they are read, read with one-line errors.

:func:`check_file` tells a missing file, a broken symbolic link, a symbolic link loop, a
directory and an unreadable path apart (one error naming the argument each);
:func:`read_torch` reads a torch file with ``weights_only=True`` and turns torch's
multi-paragraph refusals (a pickle, a whole pickled module) into one line that says what to do.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import warnings
from pathlib import Path

__all__ = ["check_file", "read_torch"]


def check_file(path: object, name: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` to an existing regular file (links followed).

    Args:
        path: a str or path-like.
        name: the argument named in errors (``"image"``, ``"weights"``, ``"--maps"``...).

    Raises:
        TypeError: ``path`` is not a path.
        FileNotFoundError: nothing exists there, or a symbolic link points to nothing.
        ValueError: a symbolic link loop, a directory or another non-file, a path the system
            refuses (too long, a NUL byte, no permission to look).

    Example:
        >>> check_file(__file__, "module").name
        '_files.py'
        >>> check_file("/", "image")
        Traceback (most recent call last):
        ...
        ValueError: image: not a file: /
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name}: expected a file path, got {type(path).__name__}")
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        if p.is_symlink():
            raise FileNotFoundError(
                f"{name}: broken symbolic link (its target does not exist): {p}"
            ) from None
        raise FileNotFoundError(f"{name}: file not found: {p}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{name}: symbolic link loop: {p}") from None
        raise ValueError(f"{name}: cannot access {p} ({exc.strerror or exc})") from None
    except ValueError as exc:  # an embedded NUL byte
        raise ValueError(f"{name}: not a valid path ({exc})") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{name}: not a file: {p}")
    return p


def _why_not(exc: BaseException) -> str:
    """One line saying why torch refused a file (its own text is several paragraphs)."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"it holds a pickled Python object ({found.group(1)}), which is never loaded; "
            "save the network's state_dict() instead"
        )
    if "Unsupported operand" in text or "Weights only load failed" in text:
        return "a pickle that is not a torch weights file; only tensors are loaded"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__


def read_torch(path: Path, name: str) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)``, or one ValueError line.

    Example:
        >>> import tempfile, pickle, pathlib
        >>> bad = pathlib.Path(tempfile.mkdtemp()) / "w.pkl"
        >>> _ = bad.write_bytes(pickle.dumps({"a": 1}))
        >>> read_torch(bad, "weights")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: weights: cannot read ...w.pkl as torch weights (a pickle that is not ...)
    """
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- zip, pickle and unpickler errors of a bad file
        raise ValueError(f"{name}: cannot read {path} as torch weights ({_why_not(exc)})") from None
