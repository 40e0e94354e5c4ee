"""ICD-10-CM facts: code normalisation, entries, notes inherited from ancestors, children.

Tabular convention: a note written at a category applies to every code below it, so the notes
of E11.22 are its own plus those of E11.2 and E11, and of section E08-E13 and chapter 4.
Ancestors are found by code prefix (one query), which also covers 7th-character codes whose
placeholder-X parents do not exist; sections and chapters by category range.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from consultant.codes.memo import per_release
from consultant.codes.models import Icd10cmBlock, Icd10cmCode
from consultant.codes.sources import Sources

ICD_RE = re.compile(r"^([A-Z][0-9A-Z]{2})\.?([0-9A-Z]{1,4})?$")
NOTE_LABELS = {
    "inclusion": "Inclusion terms", "includes": "Includes", "excludes1": "Excludes1",
    "excludes2": "Excludes2", "code_first": "Code first", "use_additional": "Use additional code",
    "code_also": "Code also", "notes": "Notes", "seven_chr_note": "7th character",
}
# A code (or category with .-) referenced in a note: "type 1 diabetes mellitus (E10.-)",
# ranges "(N18.1-N18.6)", "(F70-F79)".
_REF_RE = re.compile(r"\b([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?)(?:\.?-)?(?:\s*-\s*([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?))?")


def normalise(code: str) -> str | None:
    """``e1122`` / ``E11.22`` -> ``E11.22``; None when it cannot be an ICD-10-CM code."""
    m = ICD_RE.match(code.strip().upper())
    if not m:
        return None
    return m.group(1) + (f".{m.group(2)}" if m.group(2) else "")


def prefixes(code: str) -> list[str]:
    """Possible ancestors of a dotted code, nearest last: S72.001A -> S72, S72.0, S72.00, S72.001."""
    head, _, tail = code.partition(".")
    return [head] + [f"{head}.{tail[:i]}" for i in range(1, len(tail))]


@dataclass
class IcdEntry:
    code: str
    description: str
    billable: bool
    needs_7th: bool
    parent: str | None
    notes: dict[str, Any] = field(default_factory=dict)
    # Set on chapter and section entries only: the category range they cover.
    first: str | None = None
    last: str | None = None

    def covers(self, code: str) -> bool:
        """Is ``code`` inside this chapter or section (compared by its category)?"""
        return self.first is not None and self.last is not None and self.first <= code[:3] <= self.last

    @property
    def header(self) -> bool:
        """A category/subcategory with codes below it (not billable, no 7th character)."""
        return not self.billable and not self.needs_7th


def _entry(row: Icd10cmCode) -> IcdEntry:
    return IcdEntry(row.code, row.description, row.billable, row.needs_7th, row.parent, row.notes or {})


def fetch(src: Sources, codes: Iterable[str]) -> dict[str, IcdEntry]:
    """Entries for the given dotted codes that exist in the ICD-10-CM release in use."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = src.icd_session.scalars(
        select(Icd10cmCode).where(Icd10cmCode.release_id == src.icd.id, Icd10cmCode.code.in_(wanted))
    )
    return {r.code: _entry(r) for r in rows}


def blocks(src: Sources, codes: Iterable[str]) -> dict[str, IcdEntry]:
    """The sections and chapters holding the codes, keyed "section E08-E13" / "chapter 4"
    (keys no code can have), sections first."""
    def load() -> dict[str, tuple[list[str], list[IcdEntry]]]:
        rows = src.icd_session.scalars(
            select(Icd10cmBlock).where(Icd10cmBlock.release_id == src.icd.id)
            .order_by(Icd10cmBlock.level.desc(), Icd10cmBlock.first)  # section before chapter
        )
        levels: dict[str, tuple[list[str], list[IcdEntry]]] = {}
        for r in rows:
            firsts, entries = levels.setdefault(r.level, ([], []))
            firsts.append(r.first)
            entries.append(IcdEntry(f"{r.level} {r.name}", r.description, False, False, None,
                                    r.notes or {}, r.first, r.last))
        return levels

    # About 320 rows per release: read once per process rather than queried per lookup, and
    # searched by range start (the ranges of one level do not overlap).
    levels = per_release(src.icd_session, src.icd, "icd10cm blocks", load)
    found: dict[str, IcdEntry] = {}
    for category in sorted({c[:3] for c in codes}):
        for firsts, entries in levels.values():
            i = bisect.bisect_right(firsts, category) - 1
            if i >= 0 and entries[i].covers(category):
                found[entries[i].code] = entries[i]
    return found


def with_ancestors(src: Sources, codes: Iterable[str]) -> dict[str, IcdEntry]:
    """Entries for the codes, all their ancestors, and their section and chapter (two queries)."""
    wanted: set[str] = set()
    for code in codes:
        wanted.add(code)
        wanted.update(prefixes(code))
    entries = fetch(src, wanted)
    entries.update(blocks(src, entries))
    return entries


def levels(code: str, entries: dict[str, IcdEntry]) -> list[str]:
    """Where notes for ``code`` can be written, nearest first: the code, its ancestors, then
    its section and chapter (when ``entries`` holds them)."""
    ranges = [k for k, e in entries.items() if e.first is not None and e.covers(code)]
    return [code, *reversed(prefixes(code)), *ranges]


def inherited(code: str, entries: dict[str, IcdEntry], kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Notes that apply to ``code``: its own, then each ancestor's, labelled with their level."""
    out = []
    for level in levels(code, entries):
        entry = entries.get(level)
        if entry is None:
            continue
        for kind, value in entry.notes.items():
            if kind == "seven_chr_def" or (kinds is not None and kind not in kinds):
                continue
            if kind == "inclusion" and level != code:
                continue  # inclusion terms describe their own code only
            out.append({"kind": kind, "label": NOTE_LABELS.get(kind, kind), "from": level, "notes": value})
    return out


def seven_chr_def(code: str, entries: dict[str, IcdEntry]) -> dict[str, str]:
    """The 7th-character definitions that apply to ``code`` (nearest level wins)."""
    for level in [code, *reversed(prefixes(code))]:
        entry = entries.get(level)
        if entry is not None and "seven_chr_def" in entry.notes:
            return dict(entry.notes["seven_chr_def"])
    return {}


def children(src: Sources, code: str) -> list[IcdEntry]:
    rows = src.icd_session.scalars(
        select(Icd10cmCode)
        .where(Icd10cmCode.release_id == src.icd.id, Icd10cmCode.parent == code)
        .order_by(Icd10cmCode.code)
    )
    return [_entry(r) for r in rows]


def references(note: str) -> list[tuple[str, str]]:
    """Code ranges a note points to, as (first, last) of the same length ("E10.-" -> (E10, E10))."""
    out = []
    for m in _REF_RE.finditer(note):
        first = m.group(1)
        out.append((first, m.group(2) or first))
    return out


def covers(ref: tuple[str, str], code: str) -> bool:
    """Does the referenced code/range include ``code`` (itself or a descendant)?"""
    first, last = ref
    bare = code.replace(".", "")
    lo, hi = first.replace(".", ""), last.replace(".", "")
    width = max(len(lo), len(hi))
    return lo <= bare[:width] <= hi if len(lo) == len(hi) else bare.startswith(lo)
