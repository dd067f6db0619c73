"""One way to lay a partial job spec over another, shared by experiment variants and forks."""

from __future__ import annotations

from typing import Any


def deep_merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` laid over it: mappings merge key by key, anything else replaces (a list
    too), and ``None`` removes the key, so the field falls back to its default. Neither is modified."""
    merged = dict(base)
    for key, value in change.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
