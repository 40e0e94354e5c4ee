"""I/OCE version table (``ioce_version_ranges.csv``: ``ioce_version_seq, ioce_version_id,
date_started, date_ended``; dates YYYYMMDD).

The hospital NCCI PTP table as the I/OCE applies it is dated by I/OCE version (its
``in_force_from`` is the first day of the edit's first version); with this table ``codes show``
names the version an edit has been in force since.  Versions must be contiguous and in order:
a gap or an overlap would name the wrong version for a date, so it fails the import.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import ImportFormatError, ProgressFn, logical_name, open_data
from consultant.codes.importers import LoadResult
from consultant.codes.importers.tabular import cell, column_index, rows_after_header, text_rows, ymd

COLUMNS = ("ioce_version_seq", "ioce_version_id", "date_started", "date_ended")
VERSION_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}")


def _rows(rows: Iterator[tuple[int, list[str]]], path: Path, release_id: int,
          seen: list[tuple[str, date]]) -> Iterator[tuple[object, ...]]:
    header, data = rows_after_header(rows, lambda c: c[0].lower() == "ioce_version_seq", path)
    index = column_index(header, COLUMNS, path)
    previous_end: date | None = None
    for lineno, cells in data:
        seq, version = cell(cells, index, "ioce_version_seq"), cell(cells, index, "ioce_version_id")
        if not seq.isdigit():
            raise ImportFormatError(path, lineno, "ioce_version_seq", f"not a whole number: {seq!r}")
        if not VERSION_RE.fullmatch(version):
            raise ImportFormatError(path, lineno, "ioce_version_id", f"not a version like 27.1.0: {version!r}")
        started = ymd(cell(cells, index, "date_started"), path, lineno, "date_started", blank=())
        ended = ymd(cell(cells, index, "date_ended"), path, lineno, "date_ended", blank=())
        assert started is not None and ended is not None  # blank=() makes ymd reject blanks
        start_day, end_day = date.fromisoformat(started), date.fromisoformat(ended)
        if end_day < start_day:
            raise ImportFormatError(path, lineno, "date_ended", f"{ended} is before date_started {started}")
        if previous_end is not None and start_day != previous_end + timedelta(days=1):
            raise ImportFormatError(path, lineno, "date_started",
                                    f"{started} does not follow the previous version's end {previous_end}")
        previous_end = end_day
        seen.append((version, start_day))
        yield release_id, int(seq), version, started, ended


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load the I/OCE version table (.csv, optionally .gz)."""
    seen: list[tuple[str, date]] = []
    with open_data(path) as data:
        count = bulk_insert(session, "codes_ioce_versions",
                            ["release_id", "seq", "version", "date_started", "date_ended"],
                            _rows(text_rows(data, "ascii", ","), path, release_id, seen))
    if not count:
        raise ImportFormatError(path, None, "ioce_version_seq", "no I/OCE versions found")
    progress(count, 1000)
    (first, _), (last, last_start) = seen[0], seen[-1]
    return LoadResult(f"I/OCE versions {first}–{last}", count, effective_date=last_start,
                      details={"file": logical_name(path)})
