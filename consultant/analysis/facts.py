"""The facts stage: everything the code knowledge base says about a mail's codes, looked up in
batches (one query per table per mail), each fact with the release it comes from.

Release choice for PTP edits (CODING-RULES §0, §1): a facility (hospital outpatient) claim reads
the hospital table; a professional claim reads the dated practitioner table when the date of
service falls inside the period it answers (its quarter and any earlier date, through the
deletion dates it carries), else the newest in-force snapshot (v32.2: the edits in force on
2026-07-01, without effective dates).  An edit absent from the snapshot but present in the
dated table was deleted between the two releases.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from itertools import combinations
from typing import Any

from sqlalchemy import select

from consultant.analysis.model import Addon, Candidate, Excludes1, IcdFacts, Mue, PtpPair
from consultant.codes import icd
from consultant.codes import search as search_backend
from consultant.codes.importers.icd10cm_xml import with_7th
from consultant.codes.lookup import PTP_SELECT
from consultant.codes.models import KIND_AOC, KIND_MUE, KIND_PTP, Icd10cmCode
from consultant.codes.releases import ReleaseRef
from consultant.codes.sources import Sources

MAX_PAIRS = 45  # 10 procedure codes; more are cut and the draft says so
MAX_CHILDREN = 40
SNAPSHOT = "practitioner-snapshot"
HOSPITAL = "hospital"


def _in(prefix: str, values: list[str]) -> tuple[str, dict[str, str]]:
    names = ", ".join(f":{prefix}{i}" for i in range(len(values)))
    return names, {f"{prefix}{i}": v for i, v in enumerate(values)}


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def quarter_end(day: date) -> date:
    """The last day of the quarter ``day`` falls in."""
    last_month = (day.month - 1) // 3 * 3 + 3
    return date(day.year + (last_month == 12), last_month % 12 + 1, 1) - timedelta(days=1)


def _in_force(effective: date | None, deletion: date | None, dos: date | None) -> bool:
    """CMS deletion dates are the last day an edit applied (a quarter's last day)."""
    if dos is None:
        return deletion is None
    return (effective is None or effective <= dos) and (deletion is None or dos <= deletion)


# --- MUE ----------------------------------------------------------------------------------------
def mue(src: Sources, codes: list[str]) -> tuple[dict[str, Mue], str | None]:
    """Practitioner MUEs (the only MUE table loaded is practitioner; the source says which)."""
    rel = src.get(KIND_MUE, "practitioner") or next(iter(src.of_kind(KIND_MUE)), None)
    if rel is None or not codes:
        return {}, rel.name if rel else None
    names, params = _in("c", sorted(set(codes)))
    rows = src.rows(f"SELECT code, value, mai, rationale FROM codes_mue WHERE release_id = :r AND code IN ({names})",
                    r=rel.id, **params)
    return {r.code: Mue(r.code, r.value, r.mai, r.rationale, rel.name) for r in rows}, rel.name


# --- PTP ----------------------------------------------------------------------------------------
def ptp_release(src: Sources, dos: date | None, facility: bool) -> tuple[ReleaseRef | None, ReleaseRef | None]:
    """(table to answer from, older dated practitioner table to tell deletions from)."""
    if facility and src.get(KIND_PTP, HOSPITAL) is not None:
        return src.get(KIND_PTP, HOSPITAL), None
    dated = src.get(KIND_PTP, "practitioner")
    snap = src.get(KIND_PTP, SNAPSHOT)
    if dated is not None and (snap is None or (dos is not None and dated.effective_date is not None
                                               and dos <= quarter_end(dated.effective_date))):
        return dated, None
    if snap is not None:
        return snap, dated
    return dated or next(iter(src.of_kind(KIND_PTP)), None), None


def ptp(src: Sources, codes: list[str], dos: date | None, facility: bool) -> dict[tuple[str, str], PtpPair]:
    """What the PTP table in use says of every unordered pair of the procedure codes."""
    distinct = sorted(set(codes))
    pairs = list(combinations(distinct, 2))[:MAX_PAIRS]
    rel, older = ptp_release(src, dos, facility)
    out = {(a, b): PtpPair(a, b, rel.name if rel else None) for a, b in pairs}
    if rel is None or not pairs:
        return out
    names, params = _in("c", distinct)
    where = f"p.column_1 IN ({names}) AND p.column_2 IN ({names}) AND p.column_1 <> p.column_2"
    rows = src.rows(f"{PTP_SELECT} WHERE p.release_id = :r AND {where} ORDER BY p.column_1, p.column_2, p.id",
                    r=rel.id, **params)
    old_rows = src.rows(f"{PTP_SELECT} WHERE p.release_id = :r AND {where} ORDER BY p.column_1, p.column_2, p.id",
                        r=older.id, **params) if older else []
    snapshot = rel.variant == SNAPSHOT
    for (a, b), pair in out.items():
        pair.snapshot = snapshot
        pair.effective = rel.effective_date
        pair.through = quarter_end(rel.effective_date) if rel.effective_date else None
        for c1, c2 in ((a, b), (b, a)):
            mine = [r for r in rows if (r.column_1, r.column_2) == (c1, c2) and r.modifier_indicator != 9]
            live = [r for r in mine if snapshot or _in_force(_as_date(r.effective_date), _as_date(r.deletion_date), dos)]
            if live:
                if pair.modifier_indicator is None:
                    r = live[-1]
                    pair.column_1, pair.column_2 = c1, c2
                    pair.modifier_indicator, pair.rationale = r.modifier_indicator, r.rationale
                continue
            gone = [r for r in old_rows if (r.column_1, r.column_2) == (c1, c2) and r.modifier_indicator != 9]
            if not mine and not gone:
                continue
            # Rows for this order exist, none in force on the date: deleted, or not yet begun.
            pair.not_in_force.append((c1, c2))
            if pair.deleted_source is not None:
                continue
            if mine:
                begun = [r for r in mine if _as_date(r.effective_date) is None or dos is None
                         or _as_date(r.effective_date) <= dos]  # type: ignore[operator]
                if begun:
                    last = max(begun, key=lambda r: _as_date(r.deletion_date) or date.max)
                    pair.deleted_on = _as_date(last.deletion_date)
                else:
                    pair.begins_on = min(_as_date(r.effective_date) for r in mine)  # type: ignore[type-var]
                pair.deleted_source = rel.name
            elif older is not None and older.effective_date and rel.effective_date:
                last = max(gone, key=lambda r: _as_date(r.deletion_date) or date.max)
                deleted = _as_date(last.deletion_date)
                if deleted is not None:
                    pair.deleted_on = deleted
                else:
                    pair.deleted_between = (quarter_end(older.effective_date), rel.effective_date)
                pair.deleted_source = older.name
        if pair.modifier_indicator is None and pair.not_in_force:
            pair.column_1, pair.column_2 = pair.not_in_force[0]
    return out


# --- add-on codes -------------------------------------------------------------------------------
def addons(src: Sources, codes: list[str], dos: date | None) -> dict[str, Addon]:
    rel = src.get(KIND_AOC)
    distinct = sorted(set(codes))
    if rel is None or not distinct:
        return {}
    names, params = _in("c", distinct)
    rows = src.rows(f"SELECT addon_code, primary_code, edit_type, effective_date, deletion_date FROM codes_aoc "
                    f"WHERE release_id = :r AND addon_code IN ({names})", r=rel.id, **params)
    out = {}
    for code in distinct:
        mine = [r for r in rows if r.addon_code == code
                and _in_force(_as_date(r.effective_date), _as_date(r.deletion_date), dos)]
        if not mine:
            continue
        primaries = sorted({r.primary_code for r in mine if r.primary_code != "CCCCC"})
        present = [c for c in distinct if c in primaries and c != code]
        out[code] = Addon(code, sorted({r.edit_type for r in mine}), primaries, present, rel.name)
    return out


# --- ICD-10-CM ----------------------------------------------------------------------------------
def icd_facts(src: Sources, codes: list[str]) -> tuple[dict[str, IcdFacts], dict[str, icd.IcdEntry]]:
    entries = icd.with_ancestors(src, codes)
    out: dict[str, IcdFacts] = {}
    for code in codes:
        e = entries.get(code)
        if e is None:
            continue
        facts = IcdFacts(code, e.description, e.billable, e.needs_7th, e.header, source=src.icd.name)
        if e.needs_7th:
            facts.seventh = sorted(icd.seven_chr_def(code, entries).items())
        elif e.header:
            kids = billable_descendants(src, code)
            facts.children_total = len(kids)
            facts.children = kids[:MAX_CHILDREN]
        for note in icd.inherited(code, entries, kinds=("code_first", "use_additional")):
            target = facts.code_first if note["kind"] == "code_first" else facts.use_additional
            # Only the items that name codes ("diabetic chronic kidney disease (E11.22)"): the
            # lead-ins ("code first any associated:") say nothing alone.
            target.extend(str(n) for n in note["notes"] if icd.references(str(n)))
        out[code] = facts
    return out, entries


def billable_descendants(src: Sources, code: str) -> list[tuple[str, str]]:
    prefix = code if "." in code else code + "."
    rows = src.icd_session.execute(
        select(Icd10cmCode.code, Icd10cmCode.description, Icd10cmCode.billable, Icd10cmCode.needs_7th)
        .where(Icd10cmCode.release_id == src.icd.id, Icd10cmCode.code.like(prefix + "%"))
        .order_by(Icd10cmCode.code)
    )
    return [(r.code, r.description) for r in rows if r.billable and r.code != code]


_WITH_RE = re.compile(r"\bwith\b|\bdue to\b|\bin\b", re.I)


def excludes1(src: Sources, codes: list[str], entries: dict[str, icd.IcdEntry]) -> list[Excludes1]:
    """Excludes1 pairs among the codes, once per unordered pair, with the combination codes the
    tabular offers (a code whose title joins both conditions, found near either code)."""
    out = []
    for a, b in combinations(sorted(set(codes)), 2):
        for first, second in ((a, b), (b, a)):
            hit = _excludes1_note(first, second, entries)
            if hit is None:
                continue
            level, note = hit
            out.append(Excludes1(first, second, level, note, combination(src, first, second, entries),
                                 src.icd.name))
            break
    return out


def _excludes1_note(code: str, other: str, entries: dict[str, icd.IcdEntry]) -> tuple[str, str] | None:
    for note in icd.inherited(code, entries, kinds=("excludes1",)):
        for item in note["notes"]:
            if any(icd.covers(ref, other) for ref in icd.references(item)):
                return note["from"], item
    return None


def combination(src: Sources, a: str, b: str, entries: dict[str, icd.IcdEntry]) -> list[tuple[str, str]]:
    """Billable codes in either code's category whose title names the other condition too
    ("… with …"): the combination code the tabular offers, when there is one."""
    found: list[tuple[str, str]] = []
    for home, other in ((a, b), (b, a)):
        other_entry = entries.get(other) or entries.get(other[:3])
        if other_entry is None:
            continue
        words = {w for w in search_backend.words(other_entry.description) if len(w) > 3}
        for code, desc in billable_descendants(src, home[:3]):
            if not _WITH_RE.search(desc):
                continue
            title = set(search_backend.words(desc))
            if words and len(words & title) >= max(1, (len(words) + 1) // 2):
                found.append((code, desc))
    return found[:5]


def seventh_options(code: str, seventh: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(with_7th(code, ch), meaning) for ch, meaning in seventh]


# --- code search --------------------------------------------------------------------------------
_LATERALITY = {"left": ("left",), "right": ("right",), "bilateral": ("bilateral",)}


def candidates(session: Any, query: str, system: str | None, limit: int = 5) -> list[Candidate]:
    """Ranked codes for a description; a side named in the question (left/right/bilateral)
    keeps the codes of that side, and billable codes come before headers."""
    from consultant.codes.api import search

    hits = search(session, query, system=system, limit=40)
    side = next((s for s, words in _LATERALITY.items() if re.search(rf"\b{words[0]}\b", query, re.I)), None)
    ranked = []
    for i, h in enumerate(hits):
        desc = str(h.get("description") or h.get("matched") or "")
        penalty = 0
        if side is not None:
            named = {s for s in _LATERALITY if re.search(rf"\b{s}\b", desc, re.I)}
            if named and side not in named:
                continue
            penalty += 0 if side in named else 1
        if h.get("billable") is False:
            penalty += 2
        if re.search(r"\bunspecified\b", desc, re.I) and not re.search(r"\bunspecified\b", query, re.I):
            penalty += 1
        ranked.append((penalty, i, h))
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [Candidate(str(h["system"]), str(h["code"]), h.get("description"), h.get("source"),
                      h.get("billable")) for _, _, h in ranked[:limit]]
