"""NCCI procedure-to-procedure (PTP) edits, streamed in batches (a release has ~2.5M rows).

Layouts accepted, recognised from the header:

* CMS as published: tab-separated text (``ccipra-v302r0-f1.txt``, also inside CMS's zip), a few
  notice/header lines, then ``column 1, column 2, prior-1996 flag (*), effective YYYYMMDD,
  deletion YYYYMMDD or *, modifier indicator 0/1/9, rationale``.  A release ships in parts
  (f1..f4): pass all parts to one import.
* CSV re-encodings (``column_1,column_2,[prior_1996,][effective_date,]deletion_date,
  modifier_indicator,ptp_edit_rationale``) as in shared/data/cms/ncci-ptp.
* An in-force snapshot (``…,deletion_date,modifier_indicator,ptp_edit_rationale,rationale_source``,
  every deletion date ``*``, no effective dates; shared/data/cms's v32.2 2026 Q3): it becomes the
  ``practitioner-snapshot`` variant, kept beside the dated practitioner release, because it can
  say which edits were in force on its effective date but not when any of them began.
* The I/OCE hospital table (``column_1,column_2,modifier_indicator,ioce_first_version,
  ioce_last_version,in_force_from,in_force_through``).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import ImportFormatError, ProgressFn, logical_name, numbered, open_data
from consultant.codes.importers import LoadResult
from consultant.codes.models import PtpRationale

CODE_RE = re.compile(r"[A-Z0-9]{5}")
DATE_RE = re.compile(r"\d{8}")
COLUMNS = ["release_id", "column_1", "column_2", "prior_1996", "effective_date",
           "deletion_date", "modifier_indicator", "rationale_id"]
CMS_FIELDS = ("Column 1", "Column 2", "Prior to 1996", "Effective Date", "Deletion Date",
              "Modifier Indicator", "PTP Edit Rationale")


def release_name(file_name: str) -> tuple[str, str, date | None]:
    """(name, variant, effective date) from CMS or re-encoded file names."""
    low = file_name.lower()
    variant = "hospital" if any(k in low for k in ("ccioph", "hospital", "ioce")) else "practitioner"
    m = re.search(r"(?:^|[^a-z])v(\d{2})(\d)", low)
    if m:
        major, minor = int(m.group(1)), int(m.group(2))
        # NCCI version vYY.Q: YY = year - 1994, Q = quarter - 1 (v32.3 = 2026 Q4).
        effective = date(1994 + major, 3 * minor + 1, 1)
        return f"NCCI PTP {variant} v{major}.{minor} {effective.isoformat()}", variant, effective
    quarters = re.findall(r"(\d{4})q([1-4])", low)
    if quarters:
        (y1, q1), (y2, q2) = quarters[0], quarters[-1]
        effective = date(int(y2), 3 * int(q2) - 2, 1)
        span = f"{y1}Q{q1}" + (f"–{y2}Q{q2}" if (y1, q1) != (y2, q2) else "")
        source = " (I/OCE)" if "ioce" in low else ""
        return f"NCCI PTP {variant}{source} {span}", variant, effective
    return f"NCCI PTP {variant} ({file_name})", variant, None


class _Parser:
    def __init__(self, session: Session, release_id: int, path: Path) -> None:
        self.session = session
        self.release_id = release_id
        self.path = path
        self.rationales = {r.text: r.id for r in session.scalars(select(PtpRationale))}
        self.codes: set[str] = set()
        self.dates: dict[str, str | None] = {"*": None, "": None}
        self.snapshot = False

    def rationale(self, value: str) -> int | None:
        if not value:
            return None
        rid = self.rationales.get(value)
        if rid is None:
            row = PtpRationale(text=value)
            self.session.add(row)
            self.session.flush()
            rid = self.rationales[value] = row.id
        return rid

    def code(self, value: str, line: int, field: str) -> str:
        if value not in self.codes:
            if not CODE_RE.fullmatch(value):
                raise ImportFormatError(self.path, line, field, f"invalid code {value!r}")
            self.codes.add(value)
        return value

    def day(self, value: str, line: int, field: str) -> str | None:
        try:
            return self.dates[value]
        except KeyError:
            pass
        try:
            if not DATE_RE.fullmatch(value):
                raise ValueError
            iso = date(int(value[:4]), int(value[4:6]), int(value[6:])).isoformat()
        except ValueError:
            raise ImportFormatError(self.path, line, field, f"not a YYYYMMDD date (or *): {value!r}") from None
        self.dates[value] = iso
        return iso

    def modifier(self, value: str, line: int, allowed: str = "019") -> int:
        if len(value) != 1 or value not in allowed:
            raise ImportFormatError(self.path, line, "Modifier Indicator", f"expected one of {', '.join(allowed)}: {value!r}")
        return int(value)

    def cms_text(self, lines: Iterable[str]) -> Iterator[tuple[object, ...]]:
        """CMS tab-separated parts: skip notice/header lines, then every line must be an edit."""
        started = False
        for lineno, raw in numbered(lines, self.path):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            cells = line.split("\t")
            looks_like_data = (len(cells) >= 4 and CODE_RE.fullmatch(cells[0].strip()) is not None
                               and DATE_RE.fullmatch(cells[3].strip()) is not None)
            if not started:
                if not looks_like_data:
                    if lineno > 20:
                        raise ImportFormatError(self.path, lineno, "Column 1", "no PTP edit in the first 20 lines")
                    continue
                started = True
            if len(cells) < 6:
                raise ImportFormatError(self.path, lineno, CMS_FIELDS[len(cells)], "missing (line has too few tab-separated fields)")
            c = [x.strip() for x in cells]
            if c[2] not in ("", "*"):
                raise ImportFormatError(self.path, lineno, "Prior to 1996", f"expected * or blank: {c[2]!r}")
            yield (
                self.release_id, self.code(c[0], lineno, "Column 1"), self.code(c[1], lineno, "Column 2"),
                c[2] == "*", self.day(c[3], lineno, "Effective Date"),
                self.day(c[4], lineno, "Deletion Date"), self.modifier(c[5], lineno),
                self.rationale(c[6] if len(c) > 6 else ""),
            )

    def csv_rows(self, reader: Iterator[list[str]], header: list[str]) -> Iterator[tuple[object, ...]]:
        """The re-encoded CSV layouts (named columns; I/OCE when it has in_force_* columns)."""
        idx = {name: i for i, name in enumerate(header)}
        need = ["column_1", "column_2", "modifier_indicator"]
        ioce = "in_force_from" in idx
        need += ["in_force_from", "in_force_through"] if ioce else ["deletion_date"]
        for name in need:
            if name not in idx:
                raise ImportFormatError(self.path, 1, name, "column missing from the header")
        i1, i2, im = idx["column_1"], idx["column_2"], idx["modifier_indicator"]
        ip, ie = idx.get("prior_1996"), idx.get("in_force_from", idx.get("effective_date"))
        idel = idx["in_force_through"] if ioce else idx["deletion_date"]
        ir = idx.get("ptp_edit_rationale")
        self.snapshot = "rationale_source" in idx and ie is None
        width = len(header)
        for lineno, c in numbered(reader, self.path, first=2):
            if len(c) != width:
                if not any(c):
                    continue
                field = header[len(c)] if len(c) < width else "(extra field)"
                raise ImportFormatError(self.path, lineno, field, f"expected {width} fields, found {len(c)}")
            if self.snapshot and c[idel] != "*":
                raise ImportFormatError(self.path, lineno, "deletion_date",
                                        f"an in-force snapshot lists only edits in force (*): {c[idel]!r}")
            prior = None
            if ip is not None:
                if c[ip] not in ("", "*"):
                    raise ImportFormatError(self.path, lineno, "prior_1996", f"expected * or blank: {c[ip]!r}")
                prior = c[ip] == "*"
            yield (
                self.release_id, self.code(c[i1], lineno, "column_1"), self.code(c[i2], lineno, "column_2"),
                prior, self.day(c[ie], lineno, header[ie]) if ie is not None else None,
                self.day(c[idel], lineno, header[idel]),
                self.modifier(c[im], lineno, "01" if ioce else "019"),
                self.rationale(c[ir]) if ir is not None else None,
            )


def _members(path: Path) -> Iterator[tuple[str, IO[str]]]:
    """The text parts inside a CMS zip."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.lower().endswith(".txt"):
                with zf.open(info) as fh:
                    yield info.filename, io.TextIOWrapper(fh, encoding="latin-1", newline="")


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load one PTP file (CMS .txt part or zip, or CSV re-encoding; .gz accepted)."""
    parser = _Parser(session, release_id, path)
    name = logical_name(path)
    count = 0
    if name.lower().endswith(".zip"):
        for member, text_io in _members(path):
            parser.path = Path(member)
            base = count
            count += bulk_insert(session, "codes_ptp", COLUMNS, parser.cms_text(text_io),
                                 on_batch=lambda n, base=base: progress(base + n, 0))  # type: ignore[misc]
            name = member
    else:
        with open_data(path) as data:
            text_io = data.text("latin-1", newline="")
            first = text_io.readline()
            if first.lower().startswith("column_1,"):
                header = [h.strip().lower() for h in next(csv.reader([first]))]
                rows = parser.csv_rows(csv.reader(text_io), header)
            else:
                rows = parser.cms_text(_chain(first, text_io))
            count = bulk_insert(session, "codes_ptp", COLUMNS, rows,
                                on_batch=lambda n: progress(n, data.permille()))
    if not count:
        raise ImportFormatError(path, None, "Column 1", "no PTP edits found")
    label, variant, effective = release_name(name)
    if parser.snapshot:
        label, variant = f"{label} (in-force snapshot)", f"{variant}-snapshot"
    return LoadResult(label, count, variant=variant, effective_date=effective)


def _chain(first: str, rest: IO[str]) -> Iterator[str]:
    yield first
    yield from rest
