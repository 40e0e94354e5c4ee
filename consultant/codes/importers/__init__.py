"""Importers for CMS/CDC data files, one module per file layout.

Each module exposes ``load(session, release_id, path, progress) -> LoadResult``: it streams the
file into the release's rows inside the caller's transaction and raises
``consultant.codes.files.ImportFormatError`` (naming the line and field) on malformed input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from consultant.codes.files import ProgressFn


@dataclass
class LoadResult:
    """What an importer learned about the release while loading it."""

    name: str
    row_count: int
    variant: str = ""
    effective_date: date | None = None
    details: dict[str, Any] = field(default_factory=dict)


def no_progress(rows: int, permille: int) -> None:
    """The default progress callback: report nothing."""


def dumps(value: Any) -> str:
    """JSON text for a JSON column written by ``bulk_insert`` (compact, keeps non-ASCII)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


__all__ = ["LoadResult", "ProgressFn", "dumps", "no_progress"]
