"""Data modules, found through the ``simtrain.data_modules`` entry-point group."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from data_service.modules.base import DataModule

GROUP = "simtrain.data_modules"

log = logging.getLogger(__name__)


def discover() -> dict[str, DataModule]:
    """Every installed data module, by name. One broken plugin is logged and skipped, not fatal."""
    found: dict[str, DataModule] = {}
    for entry in entry_points(group=GROUP):
        try:
            module = entry.load()()
        except Exception:
            log.exception("data module %r (%s) failed to load", entry.name, entry.value)
            continue
        found[module.name] = module
    return found
