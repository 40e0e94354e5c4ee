"""ICD-10-CM Tabular List XML (CDC/NCHS ``icd10cm_tabular_YYYY.xml``, also inside simple-icd-10-cm).

The XML nests ``<diag>`` elements (category > subcategory > code).  A leaf ``diag`` is billable
unless a ``sevenChrDef`` on it or an ancestor applies: then only the 7th-character codes built
from it are billable (placeholder X pads the code to six characters first: T07 -> T07.XXXA).
Those built codes are not in the XML, so we write them as rows too, described as CDC does:
"<leaf description>, <7th character meaning>".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import (
    CORRUPT_ERRORS,
    ImportFormatError,
    ProgressFn,
    logical_name,
    open_data,
)
from consultant.codes.importers import LoadResult, dumps

# XML element -> notes key.  Order is the order notes are shown in.
NOTE_KINDS = {
    "inclusionTerm": "inclusion",
    "includes": "includes",
    "excludes1": "excludes1",
    "excludes2": "excludes2",
    "codeFirst": "code_first",
    "useAdditionalCode": "use_additional",
    "codeAlso": "code_also",
    "notes": "notes",
    "sevenChrNote": "seven_chr_note",
}
CODE_RE = re.compile(r"^[A-Z][0-9A-Z]{2}(\.[0-9A-Z]{1,4})?$")

IcdRow = tuple[str, str, bool, bool, str | None, str | None]
# (level, name, first category, last category, description, notes JSON or None)
BlockRow = tuple[str, str, str, str, str, str | None]
_RANGE_RE = re.compile(r"^([A-Z][0-9A-Z]{2})(?:-([A-Z][0-9A-Z]{2}))?$")


def _notes(elem: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in elem:
        key = NOTE_KINDS.get(child.tag)
        if key:
            texts = [(n.text or "").strip() for n in child.findall("note")]
            out.setdefault(key, []).extend(t for t in texts if t)
        elif child.tag == "sevenChrDef":
            defs: dict[str, str] = {}
            last = None
            for ext in child:
                text = (ext.text or "").strip()
                if ext.tag == "extension":
                    last = ext.get("char", "")
                    defs[last] = text
                elif ext.tag == "note" and last is not None and text:
                    # A <note> after an <extension> continues that extension's meaning.
                    defs[last] += "/" + text
            out["seven_chr_def"] = defs
    return out


# "7th characters D and S do not apply to codes in category S06 with 6th character 7 - death
# due to ..., or 8 - death due to ...": the XML states this restriction only in prose.
_EXCEPTION_RE = re.compile(
    r"7th characters? ((?:[A-Z0-9](?:, | and | or |,? and )?)+) do(?:es)? not apply to codes in "
    r"(?:category|subcategory) ([A-Z0-9.]+) with 6th character (.*)"
)


def _seven_exceptions(notes: dict[str, Any]) -> list[tuple[str, set[str], set[str]]]:
    """(code prefix, excluded 7th characters, 6th characters they are excluded for)."""
    found = []
    for note in notes.get("notes", []):
        m = _EXCEPTION_RE.search(note)
        if m:
            chars = set(re.findall(r"\b[A-Z0-9]\b", m.group(1)))
            sixth = set(re.findall(r"(?:^|, or |, | or )(\w) - ", m.group(3)))
            found.append((m.group(2).replace(".", ""), chars, sixth))
    return found


def with_7th(code: str, char: str) -> str:
    """``S72.001`` + ``A`` -> ``S72.001A``; ``T07`` + ``A`` -> ``T07.XXXA`` (placeholder X)."""
    bare = code.replace(".", "").ljust(6, "X") + char
    return bare[:3] + "." + bare[3:]


@dataclass
class Tabular:
    version: str
    rows: list[IcdRow]
    terms: list[tuple[str, str, str]]  # (code, field, text) for search
    blocks: list[BlockRow]


def _block_range(source: Path, level: str, name: str, ranges: list[str]) -> tuple[str, str]:
    """First and last category of a chapter (from its sections) or section (from its id)."""
    found = [_RANGE_RE.match(r) for r in ranges]
    if not ranges or not all(found):
        raise ImportFormatError(source, None, f"{level}/id", f"{level} {name}: no category range in {ranges!r}")
    bounds = [(m.group(1), m.group(2) or m.group(1)) for m in found if m]
    return bounds[0][0], bounds[-1][1]


def parse_tabular(stream, source: Path) -> Tabular:  # type: ignore[no-untyped-def]
    """Parse the tabular XML: codes, search terms, and chapters and sections with their notes."""
    try:
        root = ET.parse(stream).getroot()
    except CORRUPT_ERRORS as exc:
        raise ImportFormatError(source, None, "file", f"truncated or corrupt compressed data ({exc})") from None
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise ImportFormatError(source, line, "xml", f"not well-formed XML ({exc})") from None
    if root.tag != "ICD10CM.tabular":
        raise ImportFormatError(source, 1, "root", f"expected <ICD10CM.tabular>, found <{root.tag}>")
    version = (root.findtext("version") or "").strip()
    rows: list[IcdRow] = []
    terms: list[tuple[str, str, str]] = []

    exceptions: list[tuple[str, set[str], set[str]]] = []

    def allowed(code7: str) -> bool:
        bare = code7.replace(".", "")
        return not any(
            bare.startswith(prefix) and bare[5] in sixth and bare[6] in chars
            for prefix, chars, sixth in exceptions
        )

    def walk(diag: ET.Element, parent: str | None, seven: dict[str, str] | None) -> None:
        code = (diag.findtext("name") or "").strip()
        desc = (diag.findtext("desc") or "").strip()
        if not CODE_RE.match(code):
            raise ImportFormatError(source, None, "diag/name", f"invalid code {code!r} under {parent}")
        if not desc:
            raise ImportFormatError(source, None, "diag/desc", f"code {code} has no description")
        notes = _notes(diag)
        exceptions.extend(_seven_exceptions(notes))
        seven = notes.get("seven_chr_def", seven)  # type: ignore[assignment]
        children = diag.findall("diag")
        leaf = not children
        needs_7th = leaf and bool(seven)
        rows.append((code, desc, leaf and not needs_7th, needs_7th, parent, dumps(notes) if notes else None))
        terms.append((code, "descriptor", desc))
        for term in notes.get("inclusion", []):
            terms.append((code, "inclusion", term))
        for child in children:
            walk(child, code, seven)
        if needs_7th:
            for char, meaning in seven.items():  # type: ignore[union-attr]
                code7 = with_7th(code, char)
                if allowed(code7):
                    rows.append((code7, f"{desc}, {meaning}", True, False, code, None))

    blocks: list[BlockRow] = []
    for chapter in root.iter("chapter"):
        number = (chapter.findtext("name") or "").strip()
        sections = chapter.findall("section")
        first, last = _block_range(source, "chapter", number, [x.get("id", "") for x in sections])
        notes = _notes(chapter)
        blocks.append(("chapter", number, first, last, (chapter.findtext("desc") or "").strip(),
                       dumps(notes) if notes else None))
        for section in sections:
            sid = section.get("id", "")
            first, last = _block_range(source, "section", sid, [sid])
            notes = _notes(section)
            blocks.append(("section", sid, first, last, (section.findtext("desc") or "").strip(),
                           dumps(notes) if notes else None))
            for diag in section.findall("diag"):
                walk(diag, None, None)
    if not rows:
        raise ImportFormatError(source, None, "diag", "no <diag> elements found")
    return Tabular(version, rows, terms, blocks)


def release_name(version: str, file_name: str) -> tuple[str, date | None]:
    """``ICD-10-CM FY2026`` and its effective date (Oct 1 before the FY, or the update's date)."""
    if not version.isdigit():
        return f"ICD-10-CM {version or 'unknown version'}", None
    name = f"ICD-10-CM FY{version}"
    effective = date(int(version) - 1, 10, 1)
    # CDC publishes mid-year updates ("April 1, 2026"); the file name is the only place saying so.
    m = re.search(r"(January|April|July)-1-(\d{4})", file_name)
    if m:
        month = {"January": 1, "April": 4, "July": 7}[m.group(1)]
        effective = date(int(m.group(2)), month, 1)
        name += f" ({m.group(1)} 1, {m.group(2)} update)"
    return name, effective


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load an ICD-10-CM tabular XML file (plain or .gz) as release ``release_id``."""
    with open_data(path) as data:
        tabular = parse_tabular(data.binary, path)
        progress(0, data.permille())
    version, rows, terms = tabular.version, tabular.rows, tabular.terms
    count = bulk_insert(
        session,
        "codes_icd10cm",
        ["release_id", "code", "description", "billable", "needs_7th", "parent", "notes"],
        ((release_id, *row) for row in rows),
        on_batch=lambda n: progress(n, 1000),
    )
    bulk_insert(
        session,
        "codes_search",
        ["release_id", "system", "code", "field", "body"],
        ((release_id, "ICD-10-CM", code, fld, body) for code, fld, body in terms),
    )
    bulk_insert(
        session,
        "codes_icd10cm_blocks",
        ["release_id", "level", "name", "first", "last", "description", "notes"],
        ((release_id, *block) for block in tabular.blocks),
    )
    name, effective = release_name(version, logical_name(path))
    billable = sum(1 for r in rows if r[2])
    return LoadResult(
        name=name, row_count=count, effective_date=effective,
        details={"version": version, "billable_codes": billable},
    )

