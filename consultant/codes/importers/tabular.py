"""Shared reading of CMS tables that come as CSV, tab-separated text or xlsx.

CMS puts an AMA notice (one cell, often multi-line) above the header in MUE and AOC files, so
rows are read with the csv module (quoted newlines) and the header is found by its first cell.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

from consultant.codes.files import (
    DataFile,
    ImportFormatError,
    logical_name,
    numbered,
    read_all,
)


def xlsx_raw_rows(path: Path, sheet: str | None = None) -> Iterator[tuple[int, tuple[object, ...]]]:
    """(row number, cell values) of the first sheet (or the one named ``sheet``); a damaged
    workbook or a missing sheet is an ImportFormatError."""
    import zipfile
    import zlib

    import openpyxl  # type: ignore[import-untyped]

    try:
        wb = openpyxl.load_workbook(io.BytesIO(read_all(path)), read_only=True)
        if sheet is not None and sheet not in wb.sheetnames:
            raise ImportFormatError(path, None, "workbook", f"no sheet named {sheet!r} (found: {', '.join(wb.sheetnames)})")
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        yield from enumerate(ws.iter_rows(values_only=True), start=1)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zlib.error) as exc:
        raise ImportFormatError(path, None, "workbook", f"not a readable xlsx file ({exc})") from None


def xlsx_rows(path: Path, sheet: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells as stripped strings) of the first sheet (or the one named ``sheet``)."""
    for rowno, row in xlsx_raw_rows(path, sheet):
        yield rowno, ["" if v is None else str(v).strip() for v in row]


def column_index(header: list[str], wanted: tuple[str, ...], path: Path) -> dict[str, int]:
    """Where each ``wanted`` column is in ``header`` (compared case-insensitively); a missing one
    is an ImportFormatError naming it."""
    folded = [h.casefold() for h in header]
    index = {}
    for col in wanted:
        try:
            index[col] = folded.index(col.casefold())
        except ValueError:
            raise ImportFormatError(path, None, col, "column missing from the header") from None
    return index


def cell(cells: list[str], index: dict[str, int], col: str) -> str:
    """The cell of column ``col`` ("" where a short row ends before it)."""
    i = index[col]
    return cells[i] if i < len(cells) else ""


_SLASHED = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def any_date(value: str, path: Path, line: int, name: str) -> str | None:
    """A date as CMS spreadsheets hold it -> ISO string; blank -> None.

    Accepts a date cell (read as ``YYYY-MM-DD[ HH:MM:SS]``), ``YYYYMMDD`` numbers and ``M/D/YYYY``
    text: the same column is typed differently from one CMS workbook to the next.
    """
    value = value.strip()
    if not value:
        return None
    try:
        if m := _SLASHED.fullmatch(value):
            return date(int(m.group(3)), int(m.group(1)), int(m.group(2))).isoformat()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}( 00:00:00)?", value):
            return date.fromisoformat(value[:10]).isoformat()
    except ValueError:
        raise ImportFormatError(path, line, name, f"not a date: {value!r}") from None
    return ymd(value, path, line, name, blank=("",))


def text_rows(data: DataFile, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record ends, cells) of a CSV or tab-separated file."""
    reader = csv.reader(data.text(encoding, newline=""), delimiter=delimiter)
    try:
        for _, cells in numbered(reader, data.path):
            yield reader.line_num, [c.strip() for c in cells]
    except csv.Error as exc:
        raise ImportFormatError(data.path, reader.line_num, "record", f"malformed CSV ({exc})") from None


def rows_after_header(
    rows: Iterator[tuple[int, list[str]]], is_header: Callable[[list[str]], bool], path: Path
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Skip notice lines up to the header; return (header, remaining non-empty rows)."""
    for lineno, cells in rows:
        if cells and is_header(cells):
            header = [" ".join(c.split()) for c in cells]
            return header, ((n, c) for n, c in rows if any(c))
        if lineno > 50:
            break
    raise ImportFormatError(path, None, "header", "header row not found in the first 50 lines")


def is_xlsx(path: Path) -> bool:
    return logical_name(path).lower().endswith(".xlsx")


def julian(value: str, path: Path, line: int, name: str) -> str | None:
    """CMS ``YYYYDDD`` (e.g. 2013091) -> ISO date string; blank -> None."""
    value = value.strip()
    if not value:
        return None
    try:
        year, day = int(value[:4]), int(value[4:])
        if len(value) != 7 or not 1 <= day <= 366:
            raise ValueError
        return date.fromordinal(date(year, 1, 1).toordinal() + day - 1).isoformat()
    except ValueError:
        raise ImportFormatError(path, line, name, f"not a YYYYDDD date: {value!r}") from None


def ymd(value: str, path: Path, line: int, name: str, blank: tuple[str, ...] = ("", "*")) -> str | None:
    """``YYYYMMDD`` -> ISO date string; blank or ``*`` (CMS "no data") -> None."""
    value = value.strip()
    if value in blank:
        return None
    try:
        if len(value) != 8:
            raise ValueError
        return date(int(value[:4]), int(value[4:6]), int(value[6:])).isoformat()
    except ValueError:
        raise ImportFormatError(path, line, name, f"not a YYYYMMDD date: {value!r}") from None
