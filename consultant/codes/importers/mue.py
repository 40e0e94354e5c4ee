"""NCCI Medically Unlikely Edits (CMS CSV or xlsx: AMA notice, header, then code/value/MAI/rationale)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import ImportFormatError, ProgressFn, logical_name, open_data
from consultant.codes.importers import LoadResult
from consultant.codes.importers.tabular import is_xlsx, rows_after_header, text_rows, xlsx_rows

CODE_RE = re.compile(r"^[A-Z0-9]{4}[A-Z0-9]$")
# Variant from CMS's file names: MCR_MUE_PractitionerServices_Eff_..., ..._OutpatientHospitalServices_...
VARIANTS = (("practitioner", "practitioner"), ("outpatienthospital", "outpatient hospital"),
            ("facility", "outpatient hospital"), ("dme", "DME supplier"))


def release_name(file_name: str) -> tuple[str, str, date | None]:
    """(name, variant, effective date) from e.g. ``MCR_MUE_PractitionerServices_Eff_04-01-2026``."""
    low = file_name.lower().replace("_", "").replace(" ", "")
    variant = next((v for key, v in VARIANTS if key in low), "")
    m = re.search(r"(\d{2})-(\d{2})-(\d{4})", file_name)
    effective = date(int(m.group(3)), int(m.group(1)), int(m.group(2))) if m else None
    name = "NCCI MUE " + (variant or "table") + (f" {effective.isoformat()}" if effective else "")
    return name, variant, effective


def _parse_rows(rows, path: Path, release_id: int):  # type: ignore[no-untyped-def]
    _header, data = rows_after_header(rows, lambda c: c[0].upper().startswith("HCPCS"), path)
    for lineno, cells in data:
        if len(cells) < 3:
            raise ImportFormatError(path, lineno, "MUE Adjudication Indicator", "missing (fewer than 3 columns)")
        code, value, mai_text = cells[0].upper(), cells[1], cells[2]
        if not CODE_RE.match(code):
            raise ImportFormatError(path, lineno, "HCPCS/CPT Code", f"invalid code {cells[0]!r}")
        if not value.isdigit():
            raise ImportFormatError(path, lineno, "MUE Values", f"not a whole number: {value!r}")
        if mai_text[:1] not in ("1", "2", "3"):
            raise ImportFormatError(path, lineno, "MUE Adjudication Indicator", f"expected 1, 2 or 3: {mai_text!r}")
        rationale = cells[3] if len(cells) > 3 and cells[3] else None
        yield (release_id, code, int(value), int(mai_text[0]), rationale)


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load an MUE table (.csv/.xlsx, optionally .gz)."""
    columns = ["release_id", "code", "value", "mai", "rationale"]
    if is_xlsx(path):
        count = bulk_insert(session, "codes_mue", columns,
                            _parse_rows(xlsx_rows(path), path, release_id))
    else:
        with open_data(path) as data:
            delimiter = "\t" if logical_name(path).lower().endswith(".txt") else ","
            count = bulk_insert(
                session, "codes_mue", columns,
                _parse_rows(text_rows(data, "latin-1", delimiter), path, release_id),
                on_batch=lambda n: progress(n, data.permille()),
            )
    if not count:
        raise ImportFormatError(path, None, "HCPCS/CPT Code", "no MUE rows found")
    name, variant, effective = release_name(logical_name(path))
    return LoadResult(name, count, variant=variant, effective_date=effective)
