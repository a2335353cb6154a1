"""Full-text search over codes (placeholder)."""

from __future__ import annotations


def rebuild_index(engine) -> None:
    return None
