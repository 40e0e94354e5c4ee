"""The decide stage: for each question, what the data decides, as numbers and codes.

Wherever the data decides (units, MUE against the units asked, PTP indicator, add-on primaries,
a header's billable children, the 7th characters, an Excludes1 pair's combination code, a
terminated code), the decision is complete and the template words it.  Where judgement is
needed, a prompt key is added; the templates word those too (``[Consultant: …]``).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date

from consultant.analysis import facts as kb
from consultant.analysis.model import (
    Addon,
    Candidate,
    Code,
    Context,
    DefinitionDecision,
    Excludes1,
    IcdFacts,
    Mue,
    MueDecision,
    Part,
    PtpDecision,
    PtpPair,
    QType,
    Question,
    System,
    UnitsDecision,
)
from consultant.codes.extract import DoseMention, Extraction
from consultant.codes.units import BillingUnit, compute

# Modifiers CMS lists as PTP-associated (anatomic, global surgery, and 27/59/91/X{EPSU}).
PTP_MODIFIERS = frozenset(
    "E1 E2 E3 E4 FA F1 F2 F3 F4 F5 F6 F7 F8 F9 TA T1 T2 T3 T4 T5 T6 T7 T8 T9 LT RT LC LD RC LM RI "
    "24 25 57 58 78 79 27 59 91 XE XS XP XU".split()
)


_ALONE = re.compile(r"\b(alone|by itself|on its own|without (the |a |its )?primary|standalone|stand-alone)\b", re.I)


def is_em(code: str) -> bool:
    return code.isdigit() and 99202 <= int(code) <= 99499


class MailFacts:
    """The facts of one mail, looked up once, that every question's decisions read."""

    def __init__(self, codes: dict[str, Code], ext: Extraction, ctx: Context, mue: dict[str, Mue],
                 mue_source: str | None, ptp: dict[tuple[str, str], PtpPair], addons: dict[str, Addon],
                 icd: dict[str, IcdFacts], excludes1: list[Excludes1]) -> None:
        self.codes, self.ext, self.ctx = codes, ext, ctx
        self.mue, self.mue_source, self.ptp, self.addons = mue, mue_source, ptp, addons
        self.icd, self.excludes1 = icd, excludes1
        self.units_calc: dict[str, UnitsDecision] = {}

    def pair(self, a: str, b: str) -> PtpPair | None:
        return self.ptp.get((a, b)) or self.ptp.get((b, a))

    def drug_units(self, code: str) -> UnitsDecision:
        """Units of a drug code from the dose the mail gives for it (computed once per mail)."""
        if code in self.units_calc:
            return self.units_calc[code]
        entry = self.codes.get(code)
        decision = UnitsDecision(None, code, entry.description if entry else None,
                                 entry.source if entry else None)
        term = entry.extra.get("term_date") if entry else None
        if term:
            decision.terminated = date.fromisoformat(str(term)[:10])
        bu_json = entry.extra.get("billing_unit") if entry else None
        doses = _for_code(self.ext.doses, code, self.ext)
        if entry is None or entry.source is None:
            decision.reason = "unknown_code"
        elif not bu_json:
            decision.reason = "no_billing_unit"
        elif not doses and not BillingUnit.from_json(bu_json).per_item:
            decision.reason = "no_dose"
        else:
            bu = BillingUnit.from_json(bu_json)
            wasted = _for_code(self.ext.wasted, code, self.ext)
            dose = doses[0] if doses else None
            waste = wasted[0] if wasted else None
            containers = _for_code(self.ext.containers, code, self.ext)
            waste_amount, waste_unit = (waste["amount"], waste["unit"]) if waste else (None, None)
            opened = sum(float(c["amount"]) for c in containers if dose is not None and c["unit"] == dose["unit"])
            if waste is None and opened and dose is not None:
                left = opened - float(dose["amount"])
                if left > 0:
                    waste_amount, waste_unit = left, dose["unit"]
            no_waste = self.ext.no_waste or (waste_amount is None and bool(containers))
            calc = compute(code, bu, float(dose["amount"]) if dose else 1.0, dose["unit"] if dose else "units",
                           wasted=float(waste_amount) if waste_amount is not None else None,
                           wasted_unit=waste_unit, no_waste=no_waste,
                           administrations=_administrations(self.ext.text) if bu.per_item else 1)
            if calc is None:
                decision.reason = "unit_mismatch"
            else:
                calc.inputs = list(dose["inputs"]) if dose else []
                decision.calc = calc
        m = self.mue.get(code)
        decision.mue = m
        if m is not None and decision.calc is not None:
            decision.over_mue = decision.calc.units + decision.calc.wasted_units > m.value
        self.units_calc[code] = decision
        return decision

    def units_of(self, code: str) -> int | None:
        """Units the mail reports for a procedure code: stated on its line, else from its dose."""
        entry = self.codes.get(code)
        if entry is not None and entry.units is not None:
            return entry.units
        if entry is not None and entry.system == System.HCPCS and entry.extra.get("billing_unit"):
            calc = self.drug_units(code).calc
            if calc is not None:
                return calc.units + calc.wasted_units
        return None


_ADMINISTRATIONS = re.compile(r"\b(\d+|two|three|four)\s+(?:separate\s+)?(?:injections|doses|administrations|shots|syringes)\b",
                             re.I)


def _administrations(text: str) -> int:
    """How many administrations a per-dose code counts: as many as the mail says, else one."""
    m = _ADMINISTRATIONS.search(text)
    if not m:
        return 1
    word = m.group(1).lower()
    return int(word) if word.isdigit() else {"two": 2, "three": 3, "four": 4}[word]


def _for_code(items: list[DoseMention], code: str, ext: Extraction) -> list[DoseMention]:
    """The doses written for ``code``: amounts worked out from weight, BSA or volume first (the
    plain amounts beside them are often the per-kg or per-vial figures)."""
    mine = [d for d in items if d["code"] == code]
    return sorted(mine, key=lambda d: (not d["inputs"], d["start"]))


def decide(q: Question, mf: MailFacts, candidates: list[Candidate]) -> Part:
    part = Part(question=q)
    procs = [c for c in q.codes if c in mf.codes and mf.codes[c].procedure]
    icds = [c for c in q.codes if c in mf.codes and mf.codes[c].system == System.ICD]
    part.unknown = [c for c in q.codes if c in mf.codes and mf.codes[c].source is None
                    and mf.codes[c].system == System.HCPCS]
    # Every drug line's units are stated where the mail gives its dose, whatever was asked; a
    # drug units question states them (or why not) for every drug code in it.
    drugs = [c for c in procs if mf.codes[c].system == System.HCPCS and mf.codes[c].extra.get("billing_unit")]
    part.units = [u for u in (mf.drug_units(c) for c in drugs)
                  if q.qtype == QType.DRUG_UNITS or u.calc is not None]
    if q.qtype == QType.DRUG_UNITS:
        if any(u.calc is None for u in part.units) or not part.units:
            part.prompts.append("units_need_consultant")
        if any(u.calc is not None and u.calc.modifier is None and not u.calc.billing.per_item
               for u in part.units):
            part.prompts.append("waste_unknown")
    # The MUE of every procedure code asked about is a fact worth stating; only units questions
    # get the verdict.
    if procs:
        for code in procs:
            units = mf.units_of(code)
            m = mf.mue.get(code)
            part.mue.append(MueDecision(code, units, m, over=bool(m and units is not None and units > m.value),
                                        source=mf.mue_source))
        if q.qtype == QType.UNITS_MUE and any(d.units is None for d in part.mue):
            part.prompts.append("units_not_given")
    # "Can 64484 ever be billed alone?" asks about the add-on without its primary, whatever
    # else the mail names.
    alone = bool(_ALONE.search(q.text))
    part.addons = [dataclasses.replace(a, present=[c for c in a.present if c in procs], alone=alone)
                   for a in (mf.addons[c] for c in procs if c in mf.addons)]
    if q.qtype in (QType.BUNDLING, QType.MODIFIER, QType.ADDON):
        seen: set[tuple[str, str]] = set()
        for i, a in enumerate(procs):
            for b in procs[i + 1:]:
                pair = mf.pair(a, b)
                key = tuple(sorted((a, b)))
                if pair is None or key in seen:
                    continue
                seen.add(key)  # type: ignore[arg-type]
                d = PtpDecision(pair)
                if pair.modifier_indicator == 1 and pair.column_2:
                    d.modifier_on = pair.column_2
                    d.suggested_modifier = "25" if is_em(pair.column_2) else "59_or_x"
                    d.modifiers_given = mf.codes[pair.column_2].modifiers if pair.column_2 in mf.codes else []
                    part.prompts.append("distinct_service")
                part.ptp.append(d)
        if not part.ptp and len(procs) < 2 and q.qtype != QType.ADDON:
            part.prompts.append("one_procedure_only")
    if q.qtype in (QType.DIAGNOSIS, QType.CODE_DEFINITION) or icds:
        part.icd = [mf.icd[c] for c in icds if c in mf.icd]
        part.excludes1 = [x for x in mf.excludes1 if x.a in icds and x.b in icds]
        if q.qtype == QType.DIAGNOSIS and any(f.header and len(f.children) > 1 for f in part.icd):
            part.prompts.append("pick_child")
        if q.qtype == QType.DIAGNOSIS and any(f.needs_7th for f in part.icd):
            part.prompts.append("pick_seventh")
        if part.excludes1:
            part.prompts.append("excludes1_exception")
    if q.qtype == QType.CODE_SEARCH:
        part.candidates = candidates
        part.prompts.append("confirm_candidate" if candidates else "find_code")
    if q.qtype in (QType.CODE_DEFINITION, QType.ADDON):
        for code in q.codes:
            entry = mf.codes.get(code)
            if entry is None or entry.system == System.MODIFIER:
                continue
            term = entry.extra.get("term_date")
            part.definitions.append(DefinitionDecision(
                entry, date.fromisoformat(str(term)[:10]) if term else None,
                list(entry.extra.get("cross_references") or [])))
        if any(d.code.system == System.CPT and not d.code.description for d in part.definitions):
            part.prompts.append("explain_cpt")
    if q.qtype == QType.OTHER:
        part.prompts.append("answer_by_hand")
    part.prompts = list(dict.fromkeys(part.prompts))
    part.decided = not part.prompts
    return part


def other_pairs(parts: list[Part], mf: MailFacts) -> list[PtpDecision]:
    """The PTP status of the pairs of the mail's procedure codes that no question's answer
    covers: a claim carries all its codes, and an edit between two of them matters whatever
    was asked."""
    covered = {tuple(sorted((d.pair.a, d.pair.b))) for p in parts for d in p.ptp}
    return [PtpDecision(pair) for key, pair in sorted(mf.ptp.items()) if tuple(sorted(key)) not in covered]


def other_codes(parts: list[Part], mf: MailFacts) -> tuple[list[MueDecision], list[Addon]]:
    """The MUE and add-on facts of procedure codes in the mail that no question is about."""
    asked = {c for p in parts for c in p.question.codes}
    rest = [c for c, e in mf.codes.items() if e.procedure and c not in asked]
    mue = [MueDecision(c, mf.units_of(c), mf.mue.get(c), source=mf.mue_source) for c in rest]
    for d in mue:
        d.over = bool(d.mue and d.units is not None and d.units > d.mue.value)
    return mue, [mf.addons[c] for c in rest if c in mf.addons]


def findings(mf: MailFacts, hcpcs_terms: list[tuple[str, str | None, str | None]]) -> list[dict[str, object]]:
    """The mail's findings from the same facts the decisions read (one list, no duplicates)."""
    out: list[dict[str, object]] = []
    for pair in mf.ptp.values():
        if pair.modifier_indicator is not None:
            given = sorted(PTP_MODIFIERS.intersection(
                m for c in (pair.a, pair.b) if c in mf.codes for m in mf.codes[c].modifiers))
            out.append({"kind": "ptp_edit", "codes": [pair.column_1, pair.column_2], "source": pair.source,
                        "modifier_indicator": pair.modifier_indicator, "rationale": pair.rationale,
                        "snapshot": pair.snapshot, "modifiers_given": given})
        # An edit that existed but is not in force is worth saying only when no edit applies to
        # the pair either way.
        for c1, c2 in pair.not_in_force if pair.modifier_indicator is None else []:
            out.append({"kind": "ptp_edit_not_in_force", "codes": [c1, c2], "source": pair.deleted_source,
                        "deleted_on": pair.deleted_on.isoformat() if pair.deleted_on else None,
                        "deleted_between": [d.isoformat() for d in pair.deleted_between] if pair.deleted_between else None,
                        "begins_on": pair.begins_on.isoformat() if pair.begins_on else None})
    for code, entry in mf.codes.items():
        if not entry.procedure:
            continue
        units = mf.units_of(code)
        m = mf.mue.get(code)
        if m is not None and units is not None and units > m.value:
            out.append({"kind": "mue_exceeded", "codes": [code], "source": m.source, "units": units,
                        "value": m.value, "mai": m.mai, "rationale": m.rationale})
    procs = [c for c, e in mf.codes.items() if e.procedure]
    for code, addon in mf.addons.items():
        others = [c for c in procs if c != code]
        if addon.present or (addon.edit_types == [2] and others):
            continue
        out.append({"kind": "addon_without_primary", "codes": [code], "source": addon.source,
                    "edit_types": addon.edit_types, "primaries": addon.primaries})
    for f in mf.icd.values():
        if f.needs_7th:
            out.append({"kind": "missing_7th_character", "codes": [f.code], "source": f.source,
                        "characters": [ch for ch, _ in f.seventh]})
        elif f.header:
            out.append({"kind": "not_billable", "codes": [f.code], "source": f.source,
                        "children": [c for c, _ in f.children], "children_total": f.children_total})
    for x in mf.excludes1:
        out.append({"kind": "excludes1_conflict", "codes": [x.a, x.b], "source": x.source, "level": x.level,
                    "note": x.note, "combination": [c for c, _ in x.combination]})
    when = mf.ctx.date_of_service or date.today()
    for code, term, source in hcpcs_terms:
        if term and when > date.fromisoformat(term[:10]):
            out.append({"kind": "terminated_code", "codes": [code], "source": source, "term_date": term[:10],
                        "dos_given": mf.ctx.date_of_service is not None})
    return out


__all__ = ["MailFacts", "decide", "findings", "is_em", "kb"]
