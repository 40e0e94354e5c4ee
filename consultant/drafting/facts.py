"""The facts block of a draft: for each question, what the code data says, each fact with its source.

A fact is a dict ``{"kind", "codes", "text", "source"}`` plus structured fields the suggested
answer and the tests read (``indicator``, ``value``, ``mai``, ``units`` ...).  Texts are written
for the requester: they go into the reply as they are, so they never contain CPT descriptor text
unless an operator-licensed CPT file supplied it (``cpt_descriptors`` is then set and the footer
carries the AMA notice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from itertools import combinations
from typing import Any

from sqlalchemy.orm import Session

from consultant.drafting import kb, units
from consultant.drafting.questions import (
    BUNDLING,
    CODE_DEFINITION,
    CODE_SEARCH,
    DIAGNOSIS,
    DRUG_UNITS,
    MODIFIER,
    UNITS_MUE,
    MailContext,
    Part,
    code_system,
)

MAX_PAIR_CODES = 6
# Quarterly data (NCCI, HCPCS) older than this many days before the date of service is flagged.
QUARTER_DAYS = 92


@dataclass
class PartFacts:
    """Everything found for one question; ``facts`` is what the reply lists."""

    part: Part
    facts: list[dict[str, Any]] = field(default_factory=list)
    codes: dict[str, kb.CodeFacts] = field(default_factory=dict)
    ptp: dict[tuple[str, str], list[kb.PtpFact]] = field(default_factory=dict)
    mue: dict[str, kb.MueFact] = field(default_factory=dict)
    aoc: dict[str, kb.AocFact] = field(default_factory=dict)
    calcs: list[units.UnitCalc] = field(default_factory=list)
    search_hits: list[dict[str, Any]] = field(default_factory=list)
    cpt_descriptor_shown: bool = False

    @property
    def sources(self) -> list[str]:
        return sorted({f["source"] for f in self.facts if f.get("source")})

    def add(self, kind: str, codes: list[str], text: str, source: str, **extra: Any) -> None:
        self.facts.append({"kind": kind, "codes": codes, "text": text, "source": source, **extra})


def _procedures(codes: list[str]) -> list[str]:
    return [c for c in codes if code_system(c) in ("CPT", "HCPCS")]


def build(session: Session, part: Part, ctx: MailContext) -> PartFacts:
    """Look up the facts a question of this type needs."""
    pf = PartFacts(part=part)
    on = ctx.date_of_service
    for code in part.codes:
        _code_facts(session, pf, code, on)
    procs = _procedures(part.codes)
    if part.qtype in (BUNDLING, MODIFIER):
        for a, b in combinations(procs[:MAX_PAIR_CODES], 2):
            _ptp_facts(session, pf, a, b, on)
    if part.qtype in (BUNDLING, MODIFIER, UNITS_MUE, CODE_DEFINITION):
        for code in procs:
            _aoc_facts(session, pf, code, procs, on)
    if part.qtype in (UNITS_MUE, DRUG_UNITS):
        for code in procs:
            _mue_facts(session, pf, code, part.units_asked if part.qtype == UNITS_MUE else None)
    if part.qtype == DRUG_UNITS:
        _unit_facts(pf, ctx)
    if part.qtype == DIAGNOSIS:
        _diagnosis_facts(pf)
    if part.qtype == CODE_SEARCH:
        _search_facts(session, pf)
    if part.qtype == MODIFIER:
        for mod in part.modifiers:
            text, source = kb.modifier_descriptor(session, mod)
            if text:
                pf.add("modifier", [mod], f"Modifier {mod}: {text}", source)
    _release_age(session, pf, on)
    return pf


def _code_facts(session: Session, pf: PartFacts, code: str, on: date | None) -> None:
    system = code_system(code)
    cf = kb.describe(session, code, system, on)
    pf.codes[code] = cf
    if system == "CPT":
        if cf.descriptor_is_cpt and cf.descriptor:
            pf.cpt_descriptor_shown = True
            pf.add("descriptor", [code], f"CPT {code}: {cf.descriptor}", cf.source, system=system)
        elif cf.found:
            pf.add("descriptor", [code], f"CPT {code}: a code listed in the CMS edit tables (its "
                   "descriptor is AMA CPT text and is not reproduced here)", cf.source, system=system)
        else:
            pf.add("descriptor", [code], f"CPT {code}: {cf.status}", cf.source, system=system)
        return
    if not cf.found:
        pf.add("descriptor", [code], f"{system} {code}: {cf.status}", cf.source, system=system,
               found=False)
        return
    pf.add("descriptor", [code], f"{system} {code}: {cf.descriptor}", cf.source, system=system,
           found=True)
    if system == "HCPCS":
        pf.add("status", [code], f"{code} is {cf.status}", cf.source, billable=cf.billable)
    else:
        state = "billable" if cf.billable else "not billable: it is a category header, a more specific code is required"
        pf.add("status", [code], f"{code} is {state}", cf.source, billable=cf.billable)
        for key, label in (("excludes1", "Excludes1"), ("code_first", "Code first"),
                           ("use_additional", "Use additional code"), ("excludes2", "Excludes2")):
            items = cf.notes.get(key) or []
            if items:
                shown = "; ".join(items[:4]) + ("; …" if len(items) > 4 else "")
                shown = re.sub(r":\s*;\s*|:\s*\n\s*", ": ", shown).replace("\n", "; ")
                pf.add("icd_note", [code], f"{code} {label}: {shown}", cf.source, note=key)


def _ptp_facts(session: Session, pf: PartFacts, a: str, b: str, on: date | None) -> None:
    edits, release = kb.ptp_between(session, a, b, on)
    pf.ptp[(a, b)] = edits
    if not release:
        pf.add("ptp", [a, b], f"{a} / {b}: no NCCI PTP release is loaded, so the pair could not be checked",
               "", indicator=None)
        return
    if not edits:
        pf.add("ptp", [a, b], f"{a} / {b}: no NCCI PTP edit in either order", release, indicator=None)
        return
    for e in edits:
        why = f" (rationale: {e.rationale})" if e.rationale else ""
        pf.add("ptp", [e.column_1, e.column_2],
               f"{e.column_1} (column 1) / {e.column_2} (column 2): PTP edit, "
               f"{kb.PTP_MEANING[e.modifier_indicator]}{why}",
               e.source, indicator=e.modifier_indicator, column_1=e.column_1, column_2=e.column_2)


def _aoc_facts(session: Session, pf: PartFacts, code: str, procs: list[str], on: date | None) -> None:
    aoc = kb.aoc_for(session, code, on)
    if aoc is None:
        return
    pf.aoc[code] = aoc
    listed = ", ".join(aoc.primaries[:12]) + (f" and {len(aoc.primaries) - 12} more" if len(aoc.primaries) > 12 else "")
    others = [p for p in procs if p != code]
    present = [p for p in others if p in aoc.primaries]
    text = f"{code} is an add-on code ({kb.AOC_TYPE.get(aoc.edit_type, f'edit type {aoc.edit_type}')})"
    if listed:
        text += f"; eligible primary codes: {listed}"
    if aoc.contractor_defined:
        text += "; further primaries are contractor-defined"
    if others:
        text += (f". In this question, {', '.join(present)} is a listed primary" if present else
                 f". None of {', '.join(others)} is a listed primary for it")
    else:
        text += ". It is not paid without an eligible primary code on the same claim"
    pf.add("aoc", [code, *present], text, aoc.source, addon=code, primaries=aoc.primaries,
           primary_present=bool(present))


def _mue_facts(session: Session, pf: PartFacts, code: str, asked: int | None) -> None:
    mue = kb.mue_for(session, code)
    if mue is None:
        release = kb.current_release(session, "mue", "practitioner")
        pf.add("mue", [code], f"{code}: no MUE in the practitioner table" if release else
               f"{code}: no MUE release is loaded", release.name if release else "", value=None)
        return
    pf.mue[code] = mue
    text = f"{code}: MUE {mue.value} unit{'s' if mue.value != 1 else ''} (MAI {mue.mai}: {kb.MAI_MEANING[mue.mai]})"
    if mue.rationale:
        text += f"; MUE rationale: {mue.rationale}"
    if asked is not None:
        text += (f". {asked} units is {'above' if asked > mue.value else 'within'} this limit")
    pf.add("mue", [code], text, mue.source, value=mue.value, mai=mue.mai, asked=asked)


def _unit_facts(pf: PartFacts, ctx: MailContext) -> None:
    part = pf.part
    drugs = [c for c in part.codes if c.startswith("J") and c in pf.codes and pf.codes[c].found]
    if not drugs:
        return
    doses = [d for d in part.doses if d.unit in ("mg", "mcg", "g", "units", "ml")]
    for i, code in enumerate(drugs):
        cf = pf.codes[code]
        if not doses:
            pf.add("units", [code], f"{code}: no dose given, so the units cannot be worked out", "",
                   units=None)
            continue
        dose = doses[min(i, len(doses) - 1)]
        calc = units.units_for(code, cf.descriptor or "", dose.amount, dose.unit, source=cf.source,
                               mue=pf.mue.get(code), container=ctx.container, discarded=ctx.wasted,
                               no_waste=ctx.no_waste)
        if calc is None:
            pf.add("units", [code], f"{code}: the dose ({dose.text}) cannot be converted to the "
                   f"billing unit in the descriptor; check the package insert", cf.source, units=None)
            continue
        pf.calcs.append(calc)
        # The MUE step names its own release; the MUE fact above cites it too.
        pf.add("units", [code], f"Units of {code}, step by step:", cf.source, steps=calc.steps,
               units=calc.units,
               jw_units=calc.jw_units, modifier=calc.modifier, over_mue=calc.over_mue,
               billing_unit=calc.billing.label())


def _icd_matches(note: str, code: str) -> bool:
    """Does an ICD note like "type 1 diabetes mellitus (E10.-)" or "(N18.1-N18.6)" cover ``code``?"""
    bare = code.replace(".", "")
    for ref in re.findall(r"\(([A-Z]\d[0-9A-Z.\-,\s]*)\)", note):
        for item in re.split(r"[,\s]+", ref):
            item = item.strip().replace(".", "")
            start, _, end = item.partition("-")
            if end and re.match(r"[A-Z]\d", end):  # a range "N181-N186"
                if bare[:len(start)] >= start and bare[:len(end)] <= end:
                    return True
            elif start and bare.startswith(start):
                return True
    return False


def _diagnosis_facts(pf: PartFacts) -> None:
    icds = [c for c in pf.part.codes if code_system(c) == "ICD-10-CM" and pf.codes[c].found]
    for a, b in combinations(icds, 2):
        for x, y in ((a, b), (b, a)):
            for key in ("excludes1", "code_first", "use_additional", "excludes2"):
                for note in pf.codes[x].notes.get(key, []):
                    if _icd_matches(note, y):
                        meaning = {
                            "excludes1": "the two are not coded together (Excludes1), except where the note's exceptions apply",
                            "excludes2": "Excludes2: both may be coded when both conditions are present",
                            "code_first": f"{y} is sequenced first (code-first note)",
                            "use_additional": f"{y} is reported in addition, after {x} (use-additional-code note)",
                        }[key]
                        pf.add("icd_relation", [x, y], f"{x} and {y}: {meaning} — note at {x}: {note}",
                               pf.codes[x].source, relation=key, at=x, other=y)


def _search_facts(session: Session, pf: PartFacts) -> None:
    query = pf.part.search_query
    system = None
    lowered = pf.part.text.lower()
    if "icd" in lowered or "diagnos" in lowered or " dx" in lowered:
        system = "ICD-10-CM"
    elif "hcpcs" in lowered or "j-code" in lowered or "j code" in lowered:
        system = "HCPCS"
    hits = kb.search(session, query, system=system, limit=5)
    pf.search_hits = hits
    if not hits:
        pf.add("search", [], f"No code found in the loaded data for “{query}”", "", hits=0)
        return
    for hit in hits:
        sys_name = str(hit.get("system", ""))
        code = str(hit.get("code", ""))
        if sys_name == "CPT" and not hit.get("licensed"):
            text = f"Candidate: CPT {code}"
        else:
            text = f"Candidate: {sys_name} {code}: {hit.get('description') or hit.get('matched') or ''}".rstrip(": ")
        pf.add("search", [code], text, str(hit.get("source") or ""), system=sys_name,
               score=hit.get("score"))


def _release_age(session: Session, pf: PartFacts, on: date | None) -> None:
    """Warn when the loaded quarterly data does not cover the date of service."""
    if on is None:
        return
    kinds = {"ptp": "ptp", "mue": "mue", "aoc": "aoc", "units": "hcpcs", "status": "hcpcs"}
    wanted = {kinds[f["kind"]] for f in pf.facts if f["kind"] in kinds and f.get("source")
              and (f["kind"] != "status" or code_system(f["codes"][0]) == "HCPCS")}
    for kind in sorted(wanted):
        release = kb.current_release(session, kind, "practitioner" if kind in ("ptp", "mue") else None)
        if release is None or release.effective_date is None:
            continue
        if on < release.effective_date:
            pf.add("release_age", [], f"The date of service {on.isoformat()} is before {release.name} "
                   "took effect; the edits in force on that date may differ", release.name)
        elif (on - release.effective_date).days > QUARTER_DAYS:
            pf.add("release_age", [], f"{release.name} took effect {release.effective_date.isoformat()}; "
                   f"for the date of service {on.isoformat()} a newer quarterly release may apply — "
                   "check it before relying on this fact", release.name)
