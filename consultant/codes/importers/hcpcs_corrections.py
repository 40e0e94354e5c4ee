"""CMS corrections to a quarterly HCPCS file (``HCPCyyyy_<MON>_ANWEB_Corrections_MMDDYYYY.xlsx``).

Layout: header row ``HCPCS/MOD Code, Action, Short Description, Long Description, Effective
Date, TOS, BETOS, Coverage, Pricing`` then one correction per row; CMS leaves many empty rows
after the last one.  ``Action`` is free text ("Terminate", "Revise TOS", "Add date s/b
1/1/2020"), so it is stored and shown as written, never interpreted; only a corrected short or
long description replaces the one shown (with both cited).  The release records which HCPCS
file it corrects, so a correction is not applied to a later quarter's file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import ImportFormatError, ProgressFn, logical_name
from consultant.codes.formats import HCPCS_RE
from consultant.codes.importers import LoadResult, dumps
from consultant.codes.importers.hcpcs import MODIFIER_RE
from consultant.codes.importers.hcpcs import release_name as hcpcs_release_name
from consultant.codes.importers.tabular import (
    any_date,
    cell,
    column_index,
    rows_after_header,
    xlsx_rows,
)

CODE_COLUMN = "HCPCS/MOD Code"
COLUMNS = (CODE_COLUMN, "Action", "Short Description", "Long Description", "Effective Date")


def _rows(path: Path, release_id: int) -> Iterator[tuple[object, ...]]:
    header, data = rows_after_header(xlsx_rows(path), lambda c: c[0].upper().startswith("HCPCS"), path)
    index = column_index(header, COLUMNS, path)
    # Every other named column (TOS, BETOS, Coverage, Pricing, and any CMS adds later).
    others = [(i, h) for i, h in enumerate(header) if h and i not in index.values()]
    for rowno, cells in data:
        code = cell(cells, index, CODE_COLUMN).upper()
        if not (HCPCS_RE.match(code) or MODIFIER_RE.match(code)):
            raise ImportFormatError(path, rowno, CODE_COLUMN, f"invalid code or modifier {code!r}")
        action = cell(cells, index, "Action")
        if not action:
            raise ImportFormatError(path, rowno, "Action", f"missing for {code}")
        fields = {h: cells[i] for i, h in others if i < len(cells) and cells[i]}
        yield (release_id, rowno, code, action,
               cell(cells, index, "Short Description") or None,
               cell(cells, index, "Long Description") or None,
               any_date(cell(cells, index, "Effective Date"), path, rowno, "Effective Date"),
               dumps(fields))


def release_name(file_name: str) -> tuple[str, str, date | None]:
    """(name, corrected HCPCS release name, effective date): the corrections file is named after
    the HCPCS file it corrects, plus the date CMS issued the corrections (MMDDYYYY)."""
    corrected, quarter = hcpcs_release_name(file_name)
    issued = re.search(r"CORRECTIONS[_ ](\d{2})(\d{2})(\d{4})", file_name.upper())
    when = f" issued {issued.group(3)}-{issued.group(1)}-{issued.group(2)}" if issued else ""
    return f"{corrected} corrections{when}", corrected, quarter


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load a HCPCS corrections workbook (.xlsx, optionally .gz)."""
    count = bulk_insert(
        session, "codes_hcpcs_corrections",
        ["release_id", "row", "code", "action", "short_description", "long_description",
         "effective_date", "fields"],
        _rows(path, release_id))
    if not count:
        raise ImportFormatError(path, None, CODE_COLUMN, "no correction rows found")
    progress(count, 1000)
    name, corrects, quarter = release_name(logical_name(path))
    return LoadResult(name, count, effective_date=quarter, details={"corrects": corrects})
