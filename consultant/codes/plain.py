"""Plain-language descriptions (placeholder until the glossary lands)."""

from __future__ import annotations


def plain_for_rows(system: str, rows: list[dict]) -> None:
    for row in rows:
        row["plain"] = row["official"]
