"""HCPCS annual-update transaction report (``HCPCyyyy_JAN_ANWEB_Transaction Report_MMDDYYYY.xlsx``).

Three sheets: "Changes by Action Code" and "Changes by HCPC" list each code's action in the
update (``HCPC, ACTION CD, SHORT DESCRIPTION, LONG DESCRIPTION``; modifiers right-aligned in
five characters, as in the HCPCS file; the action worded, e.g. "ADD", "No Change") in two
orders, and "Action Code Key" maps the letters of the HCPCS record's ACTION CD to their meaning.
Both lists are read: they must agree where they overlap, and their union is stored (CMS's
2026 report has G9871 in the first list only).  Each action is also given its key letter, found
by its wording, so ``codes show`` can explain it and the HCPCS record's own ACTION CD.
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
from consultant.codes.importers import LoadResult
from consultant.codes.importers.hcpcs import MODIFIER_RE
from consultant.codes.importers.hcpcs import release_name as hcpcs_release_name
from consultant.codes.importers.tabular import (
    cell,
    column_index,
    rows_after_header,
    xlsx_raw_rows,
)

LISTS = ("Changes by Action Code", "Changes by HCPC")
KEY_SHEET = "Action Code Key"
COLUMNS = ("HCPC", "ACTION CD", "SHORT DESCRIPTION", "LONG DESCRIPTION")


def action_key(path: Path) -> dict[str, str]:
    """The "Action Code Key" sheet: letter -> meaning (its title row is skipped)."""
    key: dict[str, str] = {}
    for rowno, row in xlsx_raw_rows(path, KEY_SHEET):
        cells = ["" if v is None else str(v).strip() for v in row[:2]]
        if not any(cells):
            continue
        letter, meaning = (cells + ["", ""])[:2]
        if len(letter) == 1 and letter.isalpha():
            if not meaning:
                raise ImportFormatError(path, rowno, f"{KEY_SHEET} meaning", f"missing for {letter}")
            key[letter.upper()] = meaning
        elif rowno > 1 or meaning:  # only the first row may be a title ("Action Codes")
            raise ImportFormatError(path, rowno, f"{KEY_SHEET} code", f"expected one letter: {letter!r}")
    if not key:
        raise ImportFormatError(path, None, KEY_SHEET, "no action codes found")
    return key


def _list(path: Path, sheet: str) -> Iterator[tuple[int, str, bool, list[str]]]:
    """(row, code, is_modifier, [action, short, long]) of one of the two lists."""
    raw = ((n, ["" if v is None else str(v) for v in row]) for n, row in xlsx_raw_rows(path, sheet))
    header, data = rows_after_header(raw, lambda c: c[0].strip().upper() == "HCPC", path)
    index = column_index([h.strip() for h in header], COLUMNS, path)
    for rowno, cells in data:
        hcpc = cell(cells, index, "HCPC")
        code = hcpc.strip().upper()
        # Modifiers stand right-aligned ("   LT"); a bare two-character cell is read the same way.
        is_modifier = len(code) == 2
        if not (MODIFIER_RE.match(code) if is_modifier else HCPCS_RE.match(code)):
            raise ImportFormatError(path, rowno, f"{sheet}: HCPC", f"invalid code or modifier {hcpc!r}")
        action = cell(cells, index, "ACTION CD").strip()
        if not action:
            raise ImportFormatError(path, rowno, f"{sheet}: ACTION CD", f"missing for {code}")
        yield rowno, code, is_modifier, [action, cell(cells, index, "SHORT DESCRIPTION").strip(),
                                         cell(cells, index, "LONG DESCRIPTION").strip()]


def _letter(action: str, key: dict[str, str]) -> str | None:
    """The key letter whose meaning is ``action`` ("ADD" -> A); None for wording not in the key."""
    folded = action.casefold()
    return next((letter for letter, meaning in key.items() if meaning.casefold() == folded), None)


def release_name(file_name: str) -> tuple[str, date | None]:
    corrected, quarter = hcpcs_release_name(file_name)
    made = re.search(r"REPORT[_ ](\d{2})(\d{2})(\d{4})", file_name.upper())
    when = f" of {made.group(3)}-{made.group(1)}-{made.group(2)}" if made else ""
    return f"{corrected} transaction report{when}", quarter


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load a transaction report workbook (.xlsx, optionally .gz)."""
    key = action_key(path)
    merged: dict[tuple[str, bool], list[str]] = {}
    for sheet in LISTS:
        for rowno, code, is_modifier, values in _list(path, sheet):
            seen = merged.setdefault((code, is_modifier), values)
            if seen[0] != values[0]:
                raise ImportFormatError(path, rowno, f"{sheet}: ACTION CD",
                                        f"{code} is {values[0]!r} here but {seen[0]!r} in the other list")
    if not merged:
        raise ImportFormatError(path, None, "HCPC", "no transactions found")
    count = bulk_insert(
        session, "codes_hcpcs_transactions",
        ["release_id", "code", "is_modifier", "action", "action_code", "short_description", "long_description"],
        ((release_id, code, is_mod, v[0], _letter(v[0], key), v[1] or None, v[2] or None)
         for (code, is_mod), v in merged.items()))
    bulk_insert(session, "codes_hcpcs_action_codes", ["release_id", "code", "meaning"],
                ((release_id, letter, meaning) for letter, meaning in key.items()))
    progress(count, 1000)
    name, quarter = release_name(logical_name(path))
    actions: dict[str, int] = {}
    for v in merged.values():
        actions[v[0]] = actions.get(v[0], 0) + 1
    return LoadResult(name, count, effective_date=quarter, details={"actions": actions})
