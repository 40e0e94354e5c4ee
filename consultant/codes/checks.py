"""Edit checks over the codes found in a mail.  Each returns findings
``{"kind", "codes", "detail", "source"}``; none of them raises for unknown input.

Kinds: ptp_edit, ptp_edit_not_in_force, mue_exceeded, addon_without_primary, not_billable,
missing_7th_character, excludes1_conflict, terminated_code (plus unknown_code and
release_missing, which ``api`` emits while resolving codes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date
from itertools import combinations
from typing import Any

from sqlalchemy import text

from consultant.codes import icd
from consultant.codes.importers.icd10cm_xml import with_7th
from consultant.codes.lookup import PTP_SELECT
from consultant.codes.meanings import AOC_TYPE, MAI, PTP_MODIFIER
from consultant.codes.models import KIND_AOC, KIND_MUE, KIND_PTP
from consultant.codes.releases import ReleaseRef
from consultant.codes.sources import Sources

Finding = dict[str, Any]
# Modifiers CMS lists as PTP-associated (anatomic, global surgery, and 27/59/91/X{EPSU}).
PTP_MODIFIERS = frozenset(
    "E1 E2 E3 E4 FA F1 F2 F3 F4 F5 F6 F7 F8 F9 TA T1 T2 T3 T4 T5 T6 T7 T8 T9 LT RT LC LD RC LM RI "
    "24 25 57 58 78 79 27 59 91 XE XS XP XU".split()
)
HOSPITAL_SETTINGS = ("hospital outpatient", "emergency department", "facility")


def finding(kind: str, codes: list[str], detail: str, source: str | None) -> Finding:
    return {"kind": kind, "codes": codes, "detail": detail, "source": source}


def _release_for(src: Sources, kind: str, setting: str | None, hospital: str, default: str) -> ReleaseRef | None:
    """Hospital-outpatient edits for facility settings when loaded, else practitioner edits."""
    if setting in HOSPITAL_SETTINGS and src.get(kind, hospital) is not None:
        return src.get(kind, hospital)
    return src.get(kind, default) or next(iter(src.of_kind(kind)), None)


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _in_force(effective: date | None, deletion: date | None, dos: date | None) -> bool:
    """Deletion dates are the last day an edit applied (CMS uses quarter-end dates)."""
    if dos is None:
        return deletion is None
    return (effective is None or effective <= dos) and (deletion is None or dos <= deletion)


def ptp(src: Sources, codes: list[str], modifiers: dict[str, list[str]], dos: date | None,
        setting: str | None) -> list[Finding]:
    """NCCI PTP edits for every ordered pair of procedure codes."""
    rel = _release_for(src, KIND_PTP, setting, "hospital", "practitioner")
    distinct = sorted(set(codes))
    if rel is None or len(distinct) < 2:
        return []
    params = {f"c{i}": c for i, c in enumerate(distinct)}
    names = ", ".join(f":c{i}" for i in range(len(distinct)))
    rows = list(src.session.execute(
        text(f"{PTP_SELECT} WHERE p.release_id = :r AND p.column_1 IN ({names}) "
             f"AND p.column_2 IN ({names}) AND p.column_1 <> p.column_2 ORDER BY p.column_1, p.column_2, p.id"),
        {"r": rel.id, **params},
    ))
    by_pair: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        by_pair.setdefault((row.column_1, row.column_2), []).append(row)
    out = []
    for (c1, c2), pair_rows in sorted(by_pair.items()):
        live = [r for r in pair_rows if r.modifier_indicator != 9]
        active = [r for r in live if _in_force(_as_date(r.effective_date), _as_date(r.deletion_date), dos)]
        when = f"on {dos.isoformat()}" if dos else "today (no date of service given)"
        if active:
            r = active[-1]
            present = sorted(PTP_MODIFIERS.intersection(modifiers.get(c1, []) + modifiers.get(c2, [])))
            detail = (f"{c1} (column 1) with {c2} (column 2): NCCI PTP edit in force {when}; "
                      f"modifier indicator {r.modifier_indicator}: {PTP_MODIFIER[r.modifier_indicator]}")
            if r.rationale:
                detail += f" Rationale: {r.rationale}."
            if r.effective_date:
                detail += f" Effective {_as_date(r.effective_date)}."
            if r.modifier_indicator == 1:
                detail += (f" PTP-associated modifier(s) in the mail: {', '.join(present)}." if present
                           else " No PTP-associated modifier was given in the mail.")
            out.append(finding("ptp_edit", [c1, c2], detail, rel.name))
        elif live:
            last = max(live, key=lambda r: _as_date(r.deletion_date) or date.max)
            out.append(finding(
                "ptp_edit_not_in_force", [c1, c2],
                f"{c1} (column 1) with {c2} (column 2): an NCCI PTP edit exists but is not in force "
                f"{when} (deleted {_as_date(last.deletion_date)}).", rel.name))
    return out


def mue(src: Sources, units: dict[str, tuple[int, str]], setting: str | None) -> list[Finding]:
    """Units of service above the code's MUE; ``units`` maps code -> (units, how they were found)."""
    rel = _release_for(src, KIND_MUE, setting, "outpatient hospital", "practitioner")
    if rel is None or not units:
        return []
    out = []
    names = ", ".join(f":c{i}" for i in range(len(units)))
    edits = {row.code: row for row in src.session.execute(
        text(f"SELECT code, value, mai, rationale FROM codes_mue WHERE release_id = :r AND code IN ({names})"),
        {"r": rel.id, **{f"c{i}": c for i, c in enumerate(units)}},
    )}
    for code, (count, how) in sorted(units.items()):
        row = edits.get(code)
        if row is not None and count > row.value:
            out.append(finding(
                "mue_exceeded", [code],
                f"{count} units of {code} ({how}) exceed the MUE of {row.value}; MAI {row.mai}: "
                f"{MAI[row.mai]} MUE rationale: {row.rationale}.", rel.name))
    return out


def units_from_dose(dose: dict[str, Any], unit: dict[str, Any] | None) -> tuple[int, str] | None:
    """Billing units for a dose ("60 mg" with "per 15 mg" -> 4), rounding up as CMS instructs."""
    if not unit or dose.get("unit") != unit["unit"] or not unit["amount"]:
        return None
    count = math.ceil(round(float(dose["amount"]) / float(unit["amount"]), 6))
    return count, f"{dose['amount']} {dose['unit']} ÷ {unit['amount']} {unit['unit']} per unit = {count} units"


def addon(src: Sources, codes: list[str], dos: date | None) -> list[Finding]:
    """Add-on codes reported without any eligible primary code."""
    rel = src.get(KIND_AOC)
    distinct = sorted(set(codes))
    if rel is None or not distinct:
        return []
    names = ", ".join(f":c{i}" for i in range(len(distinct)))
    rows = list(src.session.execute(
        text(f"SELECT addon_code, primary_code, edit_type, effective_date, deletion_date FROM codes_aoc "
             f"WHERE release_id = :r AND addon_code IN ({names})"),
        {"r": rel.id, **{f"c{i}": c for i, c in enumerate(distinct)}},
    ))
    out = []
    for code in distinct:
        mine = [r for r in rows if r.addon_code == code
                and _in_force(_as_date(r.effective_date), _as_date(r.deletion_date), dos)]
        if not mine:
            continue
        primaries = sorted({r.primary_code for r in mine if r.primary_code != "CCCCC"})
        others = [c for c in distinct if c != code]
        if set(primaries) & set(others):
            continue
        types = sorted({r.edit_type for r in mine})
        if types == [2] and others:
            continue  # contractor-defined primaries: any other procedure may qualify
        listed = ", ".join(primaries[:15]) + (f" and {len(primaries) - 15} more" if len(primaries) > 15 else "")
        detail = f"{code} is an add-on code (AOC type {'/'.join(map(str, types))}: {AOC_TYPE[types[0]]})"
        detail += f"; no eligible primary code is in the mail. Eligible primaries: {listed}." if primaries else \
            "; no other procedure code is in the mail."
        out.append(finding("addon_without_primary", [code], detail, rel.name))
    return out


def icd_codes(src: Sources, codes: Iterable[str]) -> list[Finding]:
    """Header codes (not billable), missing 7th characters, and Excludes1 conflicts."""
    distinct = sorted(set(codes))
    if not distinct:
        return []
    entries = icd.with_ancestors(src, distinct)
    out = []
    for code in distinct:
        entry = entries.get(code)
        if entry is None:
            continue
        if entry.needs_7th:
            seven = icd.seven_chr_def(code, entries)
            options = "; ".join(f"{with_7th(code, ch)} ({meaning})" for ch, meaning in seven.items())
            out.append(finding("missing_7th_character", [code],
                               f"{code} requires a 7th character: {options}.", src.icd.name))
        elif entry.header:
            kids = icd.children(src, code)
            listed = "; ".join(f"{k.code} {k.description}" + ("" if k.billable else " (not billable)")
                               for k in kids[:12])
            more = f" and {len(kids) - 12} more" if len(kids) > 12 else ""
            out.append(finding("not_billable", [code],
                               f"{code} ({entry.description}) is a header, not a billable code; "
                               f"choose a more specific code: {listed}{more}.", src.icd.name))
    for a, b in combinations(distinct, 2):
        for first, second in ((a, b), (b, a)):
            note = _excludes1(first, second, entries)
            if note:
                level, text_ = note
                out.append(finding(
                    "excludes1_conflict", [first, second],
                    f"Excludes1 at {level} (applies to {first}): \"{text_}\" covers {second}; the two "
                    "are not coded together (unless the conditions are unrelated, per the guidelines).",
                    src.icd.name))
                break
    return out


def _excludes1(code: str, other: str, entries: dict[str, icd.IcdEntry]) -> tuple[str, str] | None:
    for note in icd.inherited(code, entries, kinds=("excludes1",)):
        for item in note["notes"]:
            if any(icd.covers(ref, other) for ref in icd.references(item)):
                return note["from"], item
    return None


def terminated(hcpcs: Iterable[dict[str, Any]], dos: date | None) -> list[Finding]:
    """HCPCS codes terminated before the date of service (or before today without one)."""
    out = []
    when = dos or date.today()
    for facts in hcpcs:
        term = _as_date(facts.get("term_date"))
        if term is not None and when > term:
            out.append(finding(
                "terminated_code", [facts["code"]],
                f"{facts['code']} was terminated on {term.isoformat()} "
                f"({'before the date of service' if dos else 'no date of service given'}).",
                facts.get("source")))
    return out
