"""Explanation methods, one per module; each registers itself in :data:`unmask.registry.METHODS`.

Every module of this package is imported here, so adding a method is adding a file.
"""

import importlib
import pkgutil

from ..registry import METHODS

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS"]
