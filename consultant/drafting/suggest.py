"""The suggested answer for one question: written out where the data decides, a prompt where
judgement is needed.

Prompts are in square brackets and start with "Consultant:" so they are easy to find (and the
console can refuse to send a draft that still holds one).  Only CMS/CDC facts decide an answer
here; anything that depends on documentation or payer policy is left to the consultant.
"""

from __future__ import annotations

from consultant.drafting.facts import PartFacts
from consultant.drafting.questions import (
    BUNDLING,
    CODE_DEFINITION,
    CODE_SEARCH,
    DIAGNOSIS,
    DRUG_UNITS,
    MODIFIER,
    UNITS_MUE,
    MailContext,
    code_system,
)

PROMPT_PREFIX = "[Consultant:"
_RELATION_NAME = {"excludes1": "Excludes1 note", "excludes2": "Excludes2 note",
                  "code_first": "code-first note", "use_additional": "use-additional-code note"}


def prompt(text: str) -> str:
    return f"{PROMPT_PREFIX} {text}]"


def has_prompt(text: str) -> bool:
    """Does an answer still contain an unfilled consultant prompt?"""
    return PROMPT_PREFIX in text


def _is_em(code: str) -> bool:
    return code.isdigit() and 99202 <= int(code) <= 99499


def suggest(pf: PartFacts, ctx: MailContext) -> str:
    handler = {
        BUNDLING: _bundling, MODIFIER: _modifier, UNITS_MUE: _units_mue, DRUG_UNITS: _drug_units,
        DIAGNOSIS: _diagnosis, CODE_SEARCH: _code_search, CODE_DEFINITION: _definition,
    }.get(pf.part.qtype)
    lines = handler(pf, ctx) if handler else []
    if not lines:
        lines = [prompt("answer the question from the facts above.")]
    return "\n".join(lines)


def _payer_caveat(ctx: MailContext) -> list[str]:
    if ctx.payer in ("commercial", "workers' compensation", "Tricare"):
        return [f"NCCI edits are CMS's (Medicare and Medicaid); for a {ctx.payer} payer they apply "
                "only where the payer adopts them. " + prompt("check the payer's own policy.")]
    if ctx.payer == "Medicare Advantage":
        return ["Medicare Advantage plans generally follow NCCI, but may apply their own edits. "
                + prompt("check the plan's policy if it matters here.")]
    return []


def _pair_lines(pf: PartFacts, *, modifier_focus: bool) -> list[str]:
    lines: list[str] = []
    for (a, b), edits in pf.ptp.items():
        if not edits:
            addon = pf.aoc.get(a) or pf.aoc.get(b)
            if addon is not None:
                continue  # the add-on fact below says what matters for this pair
            src = next((f["source"] for f in pf.facts if f["kind"] == "ptp" and set(f["codes"]) == {a, b}), "")
            if not src:
                lines.append(f"{a} and {b}: " + prompt("no PTP data is loaded; check the NCCI table."))
                continue
            lines.append(f"NCCI has no procedure-to-procedure edit between {a} and {b} ({src}), so "
                         "NCCI does not stop reporting both, and no NCCI modifier is needed for them. "
                         + prompt("confirm both were separately performed and documented, and that no "
                                  "other rule (global surgery, payer policy) applies."))
            continue
        for e in edits:
            if e.modifier_indicator == 0:
                lines.append(f"No. {e.column_1} and {e.column_2} cannot be reported together: the NCCI "
                             f"PTP edit has modifier indicator 0 ({e.source}), so {e.column_2} is not "
                             f"payable with {e.column_1} for the same patient on the same day, and no "
                             "modifier bypasses this edit.")
            elif e.modifier_indicator == 1:
                if _is_em(e.column_2):
                    mod = (f"append modifier 25 to the E/M ({e.column_2}), not 59 or an X modifier, "
                           "which are not used on E/M services")
                else:
                    mod = (f"append an NCCI-associated modifier to {e.column_2} (59, or the more "
                           "specific XE/XP/XS/XU, or an anatomic modifier)")
                lines.append(f"Only if {e.column_2} is a separate, distinct service: NCCI bundles "
                             f"{e.column_2} into {e.column_1} with modifier indicator 1 ({e.source}). "
                             f"When the documentation supports it, {mod}. Otherwise report "
                             f"{e.column_1} alone.")
                lines.append(prompt(f"say whether the documentation described supports a distinct "
                                    f"{'E/M service' if _is_em(e.column_2) else 'service'}"
                                    + (" and which modifier fits best" if modifier_focus else "") + "."))
    for code, aoc in pf.aoc.items():
        present = [p for p in pf.part.codes if p in aoc.primaries]
        if present:
            lines.append(f"{code} is an add-on code and {', '.join(present)} is an eligible primary "
                         f"({aoc.source}): report {code} with {present[0]} on the same claim.")
        else:
            lines.append(f"{code} is an add-on code ({aoc.source}); it is not paid without an eligible "
                         f"primary code" + (f" ({', '.join(aoc.primaries[:6])})" if aoc.primaries else "")
                         + " reported for the same patient on the same day.")
    return lines


def _bundling(pf: PartFacts, ctx: MailContext) -> list[str]:
    return _pair_lines(pf, modifier_focus=False) + _payer_caveat(ctx)


def _modifier(pf: PartFacts, ctx: MailContext) -> list[str]:
    lines = _pair_lines(pf, modifier_focus=True)
    if not pf.ptp:
        lines.append(prompt("name the modifier and why, from the facts and the documentation described."))
    return lines + _payer_caveat(ctx)


def _units_mue(pf: PartFacts, ctx: MailContext) -> list[str]:
    lines = []
    for code, mue in pf.mue.items():
        per = "per claim line" if mue.mai == 1 else "per patient per date of service"
        line = f"{code}: up to {mue.value} unit{'s' if mue.value != 1 else ''} {per} ({mue.source}, MAI {mue.mai})."
        asked = pf.part.units_asked
        if asked is not None and asked > mue.value:
            if mue.mai == 2:
                line += (f" {asked} units exceeds it, and because the MAI is 2 (policy) the units above "
                         f"{mue.value} are not payable, even on appeal.")
            elif mue.mai == 3:
                line += (f" {asked} units exceeds it: the claim line will be denied; the units above "
                         f"{mue.value} can be paid on appeal only with documentation of medical necessity.")
            else:
                line += (f" {asked} units on one line exceeds it; if the services were separate, "
                         "report them on separate lines with the appropriate modifiers.")
        elif asked is not None:
            line += f" {asked} unit{'s' if asked != 1 else ''} is within the limit."
        lines.append(line)
    for code in pf.part.codes:
        if code_system(code) != "ICD-10-CM" and code not in pf.mue:
            lines.append(f"{code}: " + prompt("no MUE found; answer from payer policy."))
    lines += _pair_lines(pf, modifier_focus=False) if pf.aoc else []
    return lines


def _drug_units(pf: PartFacts, ctx: MailContext) -> list[str]:
    lines = []
    for calc in pf.calcs:
        cf = pf.codes.get(calc.code)
        if cf is not None and cf.billable is False:
            lines.append(f"{calc.code} was terminated on "
                         f"{cf.terminated.isoformat() if cf.terminated else '?'} ({cf.source}) and is "
                         f"not valid for this date of service; at its billing unit the dose would be "
                         f"{calc.units} unit{'s' if calc.units != 1 else ''} ({calc.formula}). "
                         + prompt("give the code in force on the date of service and its units."))
            continue
        line = (f"Report {calc.units} unit{'s' if calc.units != 1 else ''} of {calc.code} "
                f"({calc.formula}).")
        if calc.modifier == "JW":
            line += (f" Report the discarded amount on a second line: {calc.code}-JW × {calc.jw_units} "
                     f"unit{'s' if calc.jw_units != 1 else ''}.")
        elif calc.modifier == "JZ":
            line += f" Append JZ ({calc.code}-JZ) because nothing was discarded."
        else:
            line += " " + prompt("if a single-dose container was used, report any discarded amount on a "
                                 "separate line with JW; if nothing was discarded, append JZ.")
        if calc.mue is not None:
            if calc.over_mue:
                line += (f" The total exceeds the MUE of {calc.mue.value} (MAI {calc.mue.mai}): "
                         + prompt("advise on documentation/appeal."))
            else:
                line += f" This is within the MUE of {calc.mue.value} (MAI {calc.mue.mai})."
        lines.append(line)
    for f in pf.facts:
        if f["kind"] == "units" and f.get("units") is None:
            lines.append(prompt(f"{f['text']}."))
    for code, cf in pf.codes.items():
        if cf.system == "HCPCS" and cf.billable is False and not any(c.code == code for c in pf.calcs):
            lines.append(f"{code} was terminated on {cf.terminated.isoformat() if cf.terminated else '?'} "
                         f"({cf.source}) and is not valid for this date of service. "
                         + prompt("give the current code."))
    return lines


def _diagnosis(pf: PartFacts, ctx: MailContext) -> list[str]:
    lines = []
    pairs: dict[frozenset[str], list[dict]] = {}
    for f in pf.facts:
        if f["kind"] == "icd_relation":
            pairs.setdefault(frozenset((f["at"], f["other"])), []).append(f)
    for rels in pairs.values():
        src = rels[0]["source"]
        where = " and ".join(f"{_RELATION_NAME[r['relation']]} at {r['at']}" for r in rels)
        kinds = {r["relation"] for r in rels}
        if "excludes1" in kinds:
            a, b = rels[0]["at"], rels[0]["other"]
            lines.append(f"{a} and {b} are not reported together ({where}; {src}). "
                         + prompt("check whether the note's exception (unrelated conditions) applies."))
            continue
        first = next((r["other"] if r["relation"] == "code_first" else r["at"]
                      for r in rels if r["relation"] in ("code_first", "use_additional")), None)
        if first is not None:
            second = next(c for r in rels for c in (r["at"], r["other"]) if c != first)
            lines.append(f"Sequence {first} first, then {second} ({where}; {src}).")
        else:
            a, b = rels[0]["at"], rels[0]["other"]
            lines.append(f"{a} and {b} may both be reported when both conditions are present "
                         f"({where}; {src}).")
    for code, cf in pf.codes.items():
        if cf.system == "ICD-10-CM" and cf.found and cf.billable is False:
            lines.append(f"{code} is not billable: " + prompt("give the more specific code the "
                                                             "documentation supports."))
        if cf.system == "ICD-10-CM" and not cf.found:
            lines.append(f"{code} is not a valid ICD-10-CM code ({cf.source}). "
                         + prompt("suggest the intended code."))
    if not any(f["kind"] == "icd_relation" for f in pf.facts):
        lines.append(prompt("no tabular note links these codes; decide the sequencing from the "
                            "guidelines and the reason for the encounter."))
    return lines


def _code_search(pf: PartFacts, ctx: MailContext) -> list[str]:
    if not pf.search_hits:
        return [prompt(f"find the code for “{pf.part.search_query}”.")]
    first = pf.search_hits[0]
    return [f"The closest match in the code data is {first.get('system')} {first.get('code')}. "
            + prompt("confirm it fits the documentation, or pick another candidate above.")]


def _definition(pf: PartFacts, ctx: MailContext) -> list[str]:
    lines = []
    for code, cf in pf.codes.items():
        if cf.system == "CPT":
            if cf.descriptor_is_cpt:
                lines.append(f"CPT {code}: {cf.descriptor} ({cf.source}).")
            else:
                lines.append(f"{code} is a CPT code. We cannot quote CPT descriptors (AMA copyright). "
                             + prompt("explain in your own words what the code is used for, without "
                                      "quoting the descriptor."))
        elif not cf.found:
            lines.append(f"{code} is not in {cf.source or 'the loaded code data'}. "
                         + prompt("check whether it was mistyped."))
        elif cf.system == "HCPCS":
            status = ("it is active" if cf.billable else
                      f"it was terminated on {cf.terminated.isoformat() if cf.terminated else '?'} and is "
                      "not valid for later dates of service")
            lines.append(f"HCPCS {code} is “{cf.descriptor}” ({cf.source}); {status}.")
        else:
            bill = "billable" if cf.billable else "not billable (more characters are required)"
            lines.append(f"ICD-10-CM {code} is “{cf.descriptor}” ({cf.source}); it is {bill}.")
    for code, aoc in pf.aoc.items():
        lines.append(f"{code} is an add-on code: it is reported only with an eligible primary code "
                     f"({aoc.source}).")
    return lines
