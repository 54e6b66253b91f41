"""Evaluation metrics; each registers itself in :data:`unmask.registry.METRICS`.

Every module of this package is imported here, so adding a metric is adding a file.
"""

import importlib
import pkgutil

from ..registry import METRICS

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METRICS"]
