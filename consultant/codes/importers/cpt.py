"""Operator-supplied, AMA-licensed CPT descriptors (CSV: code, descriptor; header optional).

This repository never contains CPT descriptors.  The operator imports the file their AMA licence
covers; answers that show these descriptors carry the AMA notice (see ``lookup.CPT_NOTICE``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import ImportFormatError, ProgressFn, logical_name, open_data
from consultant.codes.formats import CPT_RE
from consultant.codes.importers import LoadResult
from consultant.codes.importers.tabular import text_rows


def _parse(rows, path: Path, release_id: int):  # type: ignore[no-untyped-def]
    seen: set[str] = set()
    for lineno, cells in rows:
        if not any(cells):
            continue
        code = cells[0].upper()
        if lineno == 1 and not CPT_RE.match(code):
            continue  # a header row
        if not CPT_RE.match(code):
            raise ImportFormatError(path, lineno, "code", f"not a CPT code number: {cells[0]!r}")
        if len(cells) < 2 or not cells[1]:
            raise ImportFormatError(path, lineno, "descriptor", "missing")
        if code in seen:
            raise ImportFormatError(path, lineno, "code", f"{code} appears twice")
        seen.add(code)
        yield (release_id, code, cells[1])


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    with open_data(path) as data:
        rows = list(_parse(text_rows(data, "utf-8-sig", ","), path, release_id))
    if not rows:
        raise ImportFormatError(path, None, "code", "no CPT rows found")
    count = bulk_insert(session, "codes_cpt", ["release_id", "code", "descriptor"], rows)
    bulk_insert(session, "codes_search", ["release_id", "system", "code", "field", "body"],
                ((release_id, "CPT", code, "descriptor", desc) for _, code, desc in rows))
    progress(count, 1000)
    return LoadResult(f"CPT licensed descriptors ({logical_name(path)})", count)
