"""HCPCS Level II alpha-numeric file: CMS's fixed-width 320-byte text file, or its xlsx twin.

Text layout (1-based positions, from CMS's ``HCPCyyyy_recordlayout.txt``): record id 3 starts a
code, 4 continues its long description, 7 starts a Level II modifier (modifier in positions 4-5),
8 continues a modifier's description.  Latin-1, CRLF.  Records are sliced by position and not
required to be exactly 320 bytes (CMS's G9871 record carries 226 extra trailing spaces).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import (
    ImportFormatError,
    ProgressFn,
    logical_name,
    numbered,
    open_data,
)
from consultant.codes.formats import HCPCS_RE
from consultant.codes.importers import LoadResult, dumps
from consultant.codes.importers.tabular import xlsx_raw_rows

# (field, first position, last position), 1-based inclusive, from the CMS record layout.
LAYOUT: list[tuple[str, int, int]] = [
    ("HCPC", 1, 5), ("SEQNUM", 6, 10), ("RECID", 11, 11), ("LONG DESCRIPTION", 12, 91),
    ("SHORT DESCRIPTION", 92, 119), ("PRICE1", 120, 121), ("PRICE2", 122, 123),
    ("PRICE3", 124, 125), ("PRICE4", 126, 127), ("MULT_PI", 128, 128), ("CIM1", 129, 134),
    ("CIM2", 135, 140), ("CIM3", 141, 146), ("MCM1", 147, 154), ("MCM2", 155, 162),
    ("MCM3", 163, 170), ("STATUTE", 171, 180),
    *[(f"LABCERT{i}", 181 + 3 * (i - 1), 183 + 3 * (i - 1)) for i in range(1, 9)],
    *[(f"XREF{i}", 205 + 5 * (i - 1), 209 + 5 * (i - 1)) for i in range(1, 6)],
    ("COV", 230, 230), ("ASC_GRP", 231, 232), ("ASC_DT", 233, 240), ("OPPS", 241, 243),
    ("OPPS_PI", 244, 244), ("OPPS_DT", 245, 252), ("PROCNOTE", 253, 256), ("BETOS", 257, 259),
    *[(f"TOS{i}", 260 + i, 260 + i) for i in range(1, 6)],
    ("ANEST_BU", 266, 268), ("ADD DT", 269, 276), ("ACT EFF DT", 277, 284),
    ("TERM DT", 285, 292), ("ACTION CD", 293, 293),
]
DATE_FIELDS = ("ASC_DT", "OPPS_DT", "ADD DT", "ACT EFF DT", "TERM DT")
# Fields kept in the JSON ``fields`` column (grouped where CMS repeats a field).
GROUPS = {
    "pricing_indicators": [f"PRICE{i}" for i in range(1, 5)],
    "cim": ["CIM1", "CIM2", "CIM3"],
    "mcm": ["MCM1", "MCM2", "MCM3"],
    "lab_certifications": [f"LABCERT{i}" for i in range(1, 9)],
    "cross_references": [f"XREF{i}" for i in range(1, 6)],
    "type_of_service": [f"TOS{i}" for i in range(1, 6)],
}
SINGLE = {
    "MULT_PI": "multiple_pricing_indicator", "STATUTE": "statute", "ASC_GRP": "asc_group",
    "ASC_DT": "asc_date", "OPPS": "opps_group", "OPPS_PI": "opps_payment_indicator",
    "OPPS_DT": "opps_date", "PROCNOTE": "processing_note", "BETOS": "betos",
    "ANEST_BU": "anesthesia_base_units",
}
MODIFIER_RE = re.compile(r"^[A-Z0-9]{2}$")
MONTHS = {"JAN": 1, "APR": 4, "JUL": 7, "OCT": 10}


@dataclass
class _Entry:
    code: str
    is_modifier: bool
    line: int
    fields: dict[str, str]
    long: list[str] = field(default_factory=list)


def _iso(value: str, where: Path, line: int, name: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8])).isoformat()
    except ValueError:
        raise ImportFormatError(where, line, name, f"not a YYYYMMDD date: {value!r}") from None


def _records_txt(data_text: io.TextIOBase, path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    for lineno, raw in numbered(data_text, path):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if line[10:11] in ("3", "7") and len(line) < LAYOUT[-1][2]:
            # A first record cut short (truncated file): name the first field it lacks.
            missing = next(name for name, a, b in LAYOUT if b > len(line))
            raise ImportFormatError(path, lineno, missing, f"record ends at byte {len(line)} (truncated?)")
        yield lineno, {name: line[a - 1 : b] for name, a, b in LAYOUT}


def _records_xlsx(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    rows = xlsx_raw_rows(path)
    _, first = next(rows, (1, ()))
    header = [str(h).strip() if h is not None else "" for h in first]
    for rowno, row in rows:
        if not any(v not in (None, "") for v in row):
            continue
        yield rowno, {h: "" if v is None else str(v) for h, v in zip(header, row, strict=False)}


def _entries(records: Iterator[tuple[int, dict[str, str]]], path: Path) -> Iterator[_Entry]:
    current: _Entry | None = None
    for lineno, rec in records:
        recid = rec.get("RECID", "").strip()
        hcpc = rec.get("HCPC", "")
        if recid in ("3", "7"):
            if current is not None:
                yield current
            is_mod = recid == "7"
            code = hcpc.strip()
            if not (MODIFIER_RE if is_mod else HCPCS_RE).match(code):
                raise ImportFormatError(path, lineno, "HCPC", f"invalid {'modifier' if is_mod else 'code'} {hcpc!r}")
            for name in DATE_FIELDS:
                if name in rec:
                    rec[name] = _iso(rec[name], path, lineno, name) or ""
            current = _Entry(code, is_mod, lineno, rec, [rec["LONG DESCRIPTION"].strip()])
        elif recid in ("4", "8"):
            if current is None or hcpc.strip() != current.code:
                raise ImportFormatError(path, lineno, "HCPC", f"continuation record for {hcpc.strip()!r} does not follow its code")
            current.long.append(rec["LONG DESCRIPTION"].strip())
        else:
            raise ImportFormatError(path, lineno, "RECID", f"unknown record id {recid!r}")
    if current is not None:
        yield current


def _row(release_id: int, e: _Entry) -> tuple[object, ...]:
    f = e.fields
    extra: dict[str, object] = {}
    for key, names in GROUPS.items():
        values = [f.get(n, "").strip() for n in names if f.get(n, "").strip()]
        if values:
            extra[key] = values
    for name, key in SINGLE.items():
        value = f.get(name, "").strip()
        if value:
            extra[key] = value
    # Whitespace collapsed: the text file wraps at 80 characters, the xlsx keeps stray doubles.
    long = " ".join(" ".join(e.long).split())
    return (
        release_id, e.code, e.is_modifier, long, f.get("SHORT DESCRIPTION", "").strip(),
        f.get("COV", "").strip() or None, f.get("ADD DT") or None, f.get("ACT EFF DT") or None,
        f.get("TERM DT") or None, f.get("ACTION CD", "").strip() or None, dumps(extra),
    )


def quarter_of(file_name: str) -> date | None:
    """The quarterly HCPCS file a CMS file name belongs to: ``HCPC2026_JAN...`` (the code file
    and its corrections and transaction report) or ``..._JAN2026`` (processing notes, NOC list)."""
    upper = file_name.upper()
    m = re.search(r"HCPC(\d{4})_([A-Z]{3})", upper)
    if m and m.group(2) in MONTHS:
        return date(int(m.group(1)), MONTHS[m.group(2)], 1)
    m = re.search(r"(JAN|APR|JUL|OCT)[_ -]?(\d{4})", upper)
    return date(int(m.group(2)), MONTHS[m.group(1)], 1) if m else None


def companion_result(path: Path, label: str, count: int, field: str, progress: ProgressFn) -> LoadResult:
    """The LoadResult of a quarterly companion file (processing notes, NOC list): named by its
    quarter, e.g. "HCPCS NOC codes 2026-01"; no rows at all is an ImportFormatError on ``field``."""
    if not count:
        raise ImportFormatError(path, None, field, f"no {label} found")
    progress(count, 1000)
    quarter = quarter_of(logical_name(path))
    name = f"HCPCS {label} {quarter:%Y-%m}" if quarter else f"HCPCS {label} ({logical_name(path)})"
    return LoadResult(name, count, effective_date=quarter)


def release_name(file_name: str) -> tuple[str, date | None]:
    """``HCPC2026_JAN_ANWEB...`` -> ("HCPCS 2026-01", 2026-01-01)."""
    quarter = quarter_of(file_name) if "HCPC" in file_name.upper() else None
    if quarter is not None:
        return f"HCPCS {quarter:%Y-%m}", quarter
    return f"HCPCS ({file_name})", None


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load a HCPCS alpha-numeric file (.txt/.xlsx, optionally .gz)."""
    name = logical_name(path).lower()
    rows: list[tuple[object, ...]]
    if name.endswith(".xlsx"):
        rows = [_row(release_id, e) for e in _entries(_records_xlsx(path), path)]
    else:
        with open_data(path) as data:
            rows = [_row(release_id, e) for e in _entries(_records_txt(data.text("latin-1", ""), path), path)]  # type: ignore[arg-type]
    if not rows:
        raise ImportFormatError(path, None, "RECID", "no HCPCS records found")
    count = bulk_insert(
        session, "codes_hcpcs",
        ["release_id", "code", "is_modifier", "long_description", "short_description", "coverage",
         "add_date", "action_effective_date", "term_date", "action_code", "fields"],
        rows, on_batch=lambda n: progress(n, 1000),
    )
    bulk_insert(
        session, "codes_search", ["release_id", "system", "code", "field", "body"],
        ((release_id, "MODIFIER" if r[2] else "HCPCS", r[1], "descriptor", r[3]) for r in rows),
    )
    label, effective = release_name(logical_name(path))
    modifiers = sum(1 for r in rows if r[2])
    return LoadResult(label, count, effective_date=effective,
                      details={"codes": count - modifiers, "modifiers": modifiers})
