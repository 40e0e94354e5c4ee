"""NCCI add-on code edits (CMS ``AOC_VyyyyQn-MCR`` xlsx or tab-separated txt; dates are YYYYDDD)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import ImportFormatError, ProgressFn, logical_name, open_data
from consultant.codes.importers import LoadResult
from consultant.codes.importers.tabular import (
    is_xlsx,
    julian,
    rows_after_header,
    text_rows,
    xlsx_rows,
)

COLUMNS = ("AOC_Edit_Type", "Add-On_Code", "AOC_DelDT", "Primary_Code", "Primary_Code_DelDT",
           "AOC_Edit_EffDT", "AOC_Edit_DelDT", "Special_Instruction_Notes")
CODE_RE = re.compile(r"^[A-Z0-9]{5}$")


def release_name(file_name: str) -> tuple[str, date | None]:
    m = re.search(r"V(\d{4})Q([1-4])", file_name.upper())
    if not m:
        return f"NCCI AOC ({file_name})", None
    year, quarter = int(m.group(1)), int(m.group(2))
    return f"NCCI AOC {year} Q{quarter}", date(year, 3 * quarter - 2, 1)


def _parse(rows, path: Path, release_id: int):  # type: ignore[no-untyped-def]
    header, data = rows_after_header(rows, lambda c: c[0].replace(" ", "_") == "AOC_Edit_Type", path)
    index = {}
    for col in COLUMNS:
        try:
            index[col] = [h.replace(" ", "_") for h in header].index(col)
        except ValueError:
            raise ImportFormatError(path, None, col, "column missing from the header") from None

    def cell(cells: list[str], col: str) -> str:
        i = index[col]
        return cells[i] if i < len(cells) else ""

    for lineno, cells in data:
        edit_type = cell(cells, "AOC_Edit_Type")
        if edit_type not in ("1", "2", "3"):
            raise ImportFormatError(path, lineno, "AOC_Edit_Type", f"expected 1, 2 or 3: {edit_type!r}")
        addon, primary = cell(cells, "Add-On_Code").upper(), cell(cells, "Primary_Code").upper()
        for col, value in (("Add-On_Code", addon), ("Primary_Code", primary)):
            if not CODE_RE.match(value):
                raise ImportFormatError(path, lineno, col, f"invalid code {value!r}")
        yield (
            release_id, addon, primary, int(edit_type),
            julian(cell(cells, "AOC_DelDT"), path, lineno, "AOC_DelDT"),
            julian(cell(cells, "Primary_Code_DelDT"), path, lineno, "Primary_Code_DelDT"),
            julian(cell(cells, "AOC_Edit_EffDT"), path, lineno, "AOC_Edit_EffDT"),
            julian(cell(cells, "AOC_Edit_DelDT"), path, lineno, "AOC_Edit_DelDT"),
            cell(cells, "Special_Instruction_Notes") or None,
        )


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load an AOC table (.xlsx or tab-separated .txt, optionally .gz)."""
    columns = ["release_id", "addon_code", "primary_code", "edit_type", "addon_deletion_date",
               "primary_deletion_date", "effective_date", "deletion_date", "note"]
    if is_xlsx(path):
        count = bulk_insert(session, "codes_aoc", columns, _parse(xlsx_rows(path), path, release_id))
    else:
        with open_data(path) as data:
            count = bulk_insert(session, "codes_aoc", columns,
                                _parse(text_rows(data, "latin-1", "\t"), path, release_id))
    if not count:
        raise ImportFormatError(path, None, "Add-On_Code", "no add-on code rows found")
    progress(count, 1000)
    name, effective = release_name(logical_name(path))
    return LoadResult(name, count, effective_date=effective)
