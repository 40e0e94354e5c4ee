"""HCPCS not-otherwise-classified codes (CMS ``NOC codes_<MON><YYYY>.xlsx``, in the HCPCS zip).

Layout: a title row ("NOC CODES - HCPCS 2026"), a blank row, the header ``HCPCS, LONG
DESCRIPTION, ADD DATE, TERM DATE`` (row 3), then one code per row; dates are YYYYMMDD numbers.
Claims with a NOC code need a narrative description of what was supplied, which is why
``codes show`` says so for the codes listed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import ImportFormatError, ProgressFn
from consultant.codes.formats import HCPCS_RE
from consultant.codes.importers import LoadResult
from consultant.codes.importers.hcpcs import companion_result
from consultant.codes.importers.tabular import (
    any_date,
    cell,
    column_index,
    rows_after_header,
    xlsx_rows,
)

COLUMNS = ("HCPCS", "LONG DESCRIPTION", "ADD DATE", "TERM DATE")


def _rows(path: Path, release_id: int) -> Iterator[tuple[object, ...]]:
    header, data = rows_after_header(xlsx_rows(path), lambda c: c[0].upper() == "HCPCS", path)
    index = column_index(header, COLUMNS, path)
    entry: list[object] | None = None
    seen: set[str] = set()
    for rowno, cells in data:
        code = cell(cells, index, "HCPCS").upper()
        if not HCPCS_RE.match(code):
            raise ImportFormatError(path, rowno, "HCPCS", f"invalid code {code!r}")
        description = cell(cells, index, "LONG DESCRIPTION")
        if not description:
            raise ImportFormatError(path, rowno, "LONG DESCRIPTION", "missing")
        add = any_date(cell(cells, index, "ADD DATE"), path, rowno, "ADD DATE")
        term = any_date(cell(cells, index, "TERM DATE"), path, rowno, "TERM DATE")
        # CMS wraps a long descriptor onto a second row: same code, the rest of the text, no dates.
        if entry is not None and code == entry[1] and add is None and term is None:
            entry[2] = f"{entry[2]} {description}"
            continue
        if code in seen:
            raise ImportFormatError(path, rowno, "HCPCS", f"{code} is listed twice")
        if entry is not None:
            yield tuple(entry)
        seen.add(code)
        entry = [release_id, code, description, add, term]
    if entry is not None:
        yield tuple(entry)


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load a NOC code list (.xlsx, optionally .gz)."""
    count = bulk_insert(session, "codes_hcpcs_noc",
                        ["release_id", "code", "long_description", "add_date", "term_date"],
                        _rows(path, release_id))
    return companion_result(path, "NOC codes", count, "HCPCS", progress)
