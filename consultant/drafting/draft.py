"""Turn a case's question text into a machine draft.

Steps, each in its own module: cut the text into questions and type each by named rules
(``questions``), look up the facts each type needs with their sources (``facts``, ``units``),
write the suggested answer where the data decides it (``suggest``), add consultants' notes
(``notes``), flag the patient identifiers redaction removed, and render the reply templates.  When an answer
depends on the date of service or the payer and the mail does not say, the draft is instead a
clarifying question (``kind="needs_info"``), which costs the requester no quota.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from consultant.codes import api as codes_api
from consultant.drafting import notes
from consultant.drafting.facts import PartFacts, build
from consultant.drafting.questions import (
    BUNDLING,
    MODIFIER,
    UNITS_MUE,
    MailContext,
    code_system,
    parse_question,
)
from consultant.drafting.suggest import suggest
from consultant.drafting.templating import render_pair
from consultant.privacy.redact import Summary
from consultant.settings import Settings

# Question types whose answer rests on NCCI edits: those are CMS (Medicare/Medicaid) rules that
# change quarterly, so the payer and the date of service decide the answer.
NEEDS_PAYER_AND_DATE = (BUNDLING, MODIFIER, UNITS_MUE)
TEMPLATE_TITLES = {
    "bundling": "Reporting codes together",
    "modifier": "Choosing the modifier",
    "units_mue": "Units and the MUE",
    "diagnosis": "Diagnosis codes and sequencing",
    "drug_units": "Drug units",
    "code_search": "Finding the code",
    "code_definition": "What the code is",
    "other": "Your question",
}
SUGGESTED_START = "=== SUGGESTED ANSWER{n} (consultant: edit before approving) ==="
SUGGESTED_END = "=== END OF SUGGESTED ANSWER{n} ==="
_MARKER = re.compile(r"^=== (SUGGESTED ANSWER|END OF SUGGESTED ANSWER)\b.*===\s*$", re.M)
QUOTE_CHARS = 400
# Case flags that drafting owns: recomputed on every (re)draft from the whole thread.
DRAFT_FLAGS = ("phi_suspected", "data_older_than_dos")


@dataclass
class DraftResult:
    template: str
    kind: str  # "answer" | "needs_info"
    text: str
    html: str
    codes: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    question_types: list[str] = field(default_factory=list)
    rule_hits: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def make_draft(session: Session, settings: Settings, *, question: str, subject: str,
               requester_name: str | None, redaction: Summary | None = None) -> DraftResult:
    """Analyse ``question`` (the requester's own words across the thread, already redacted by
    consultant.privacy) and render a draft; ``redaction`` says what was removed."""
    redaction = redaction or Summary()
    text = f"{subject}\n\n{question}" if _subject_is_question(subject, question) else question
    ctx, parts = parse_question(text)
    analysis = codes_api.analyse(session, text, date_of_service=ctx.date_of_service)
    _merge_analysis_context(ctx, analysis.context)

    built: list[PartFacts] = [build(session, part, ctx) for part in parts]
    part_views = [_part_view(session, pf, ctx) for pf in built]
    missing = _missing_info(ctx, built)
    releases = sorted({s for view in part_views for s in view["sources"]} |
                      {r for r in analysis.releases if r})
    cpt_shown = any(pf.cpt_descriptor_shown for pf in built)

    rule_hits = [f"question_rule:{pf.part.rule}" for pf in built]
    flags: list[str] = []
    if redaction.found:
        rule_hits += ["phi_suspected", *redaction.rules]
        flags.append("phi_suspected")
    if missing:
        rule_hits.append("needs_info:" + "+".join(m["field"] for m in missing))
    if any(f["kind"] == "release_age" for pf in built for f in pf.facts):
        flags.append("data_older_than_dos")

    base = {
        "requester_name": requester_name or "",
        "subject": subject,
        "phi": redaction.found,
        "phi_kinds": redaction.described(),
        "service_name": settings.service.name,
        "parts": part_views,
    }
    if missing:
        template, kind = "needs_info", "needs_info"
        context = {**base, "questions": [m["question"] for m in missing]}
    else:
        template, kind = "answer", "answer"
        context = base
    text_part, html_part = render_pair(template, context, settings.service.template_dir)

    facts = {
        "context": _context_json(ctx, analysis.context),
        "parts": [_facts_json(pf, view) for pf, view in zip(built, part_views, strict=True)],
        "releases": releases,
        "cpt_descriptors": cpt_shown,
        "missing": missing,
        "phi": redaction.as_json(),
        "analysis_findings": analysis.findings,
    }
    return DraftResult(
        template=template, kind=kind, text=text_part, html=html_part,
        codes=_codes_json(built, analysis.codes), findings=_findings_json(built, analysis.findings),
        facts=facts, question_types=[pf.part.qtype for pf in built], rule_hits=rule_hits,
        flags=flags,
    )


def final_text(draft_text: str) -> str:
    """The draft as the requester should read it: the suggested-answer marker lines removed."""
    cleaned = _MARKER.sub("", draft_text)
    return re.sub(r"\n{3,}", "\n\n", cleaned).strip() + "\n"


def _subject_is_question(subject: str, question: str) -> bool:
    """Read the subject as a question only when the body asks none ("Units for J1885?" above
    "We gave 60 mg today."); "Re:" subjects repeat the first mail and are never read."""
    if not subject or re.match(r"^\s*(re|aw|sv|fw|fwd)\s*:", subject, re.I):
        return False
    return subject.strip().endswith("?") and "?" not in question


def _merge_analysis_context(ctx: MailContext, found: dict[str, Any]) -> None:
    """Fill what our own reading missed from the codes API's context (it never overrides)."""
    from datetime import date

    dos = found.get("date_of_service")
    if ctx.date_of_service is None and dos:
        try:
            ctx.date_of_service = dos if isinstance(dos, date) else date.fromisoformat(str(dos))
            ctx.dos_text = str(dos)
        except ValueError:
            pass
    if ctx.payer is None and found.get("payer"):
        ctx.payer = str(found["payer"])
    if ctx.setting is None and found.get("setting"):
        ctx.setting = str(found["setting"])


def _missing_info(ctx: MailContext, built: list[PartFacts]) -> list[dict[str, str]]:
    """What to ask before answering: only what an NCCI-based answer actually depends on."""
    needing = [pf for pf in built if pf.part.qtype in NEEDS_PAYER_AND_DATE and
               any(code_system(c) != "ICD-10-CM" for c in pf.part.codes)]
    if not needing:
        return []
    nums = [str(pf.part.number) for pf in needing]
    which = ""
    if len(built) > 1:
        which = (f" for question {nums[0]}" if len(nums) == 1 else
                 f" for questions {', '.join(nums[:-1])} and {nums[-1]}")
    missing = []
    if ctx.payer is None:
        missing.append({"field": "payer", "question":
                        f"Who is the payer{which}: traditional Medicare, Medicare Advantage, Medicaid "
                        "(which state), or a commercial plan? The national correct coding (NCCI) edits "
                        "that decide this answer are Medicare and Medicaid rules; other payers may "
                        "apply their own."})
    if ctx.date_of_service is None:
        missing.append({"field": "date_of_service", "question":
                        f"What is the date of service{which}? The edits change every quarter, so "
                        "the answer depends on the date."})
    return missing


def _part_view(session: Session, pf: PartFacts, ctx: MailContext) -> dict[str, Any]:
    part = pf.part
    quote = part.text
    if len(quote) > QUOTE_CHARS:
        quote = quote[:QUOTE_CHARS].rsplit(" ", 1)[0] + " …"
    facts = [{"text": f["text"].replace("\n", " "), "source": f["source"], "kind": f["kind"],
              "steps": f.get("steps", [])}
             for f in pf.facts]
    found_notes = notes.notes_for(session, part.codes)
    sources = sorted({f["source"] for f in facts if f["source"]})
    return {
        "number": part.number,
        "quote": quote,
        "qtype": part.qtype,
        "template": part.qtype,
        "title": TEMPLATE_TITLES.get(part.qtype, "Your question"),
        "rule": part.rule,
        "facts": facts,
        "notes": found_notes,
        "suggested": suggest(pf, ctx),
        "sources": sources,
        "start_marker": SUGGESTED_START.format(n=""),
        "end_marker": SUGGESTED_END.format(n=""),
    }


def _context_json(ctx: MailContext, api_context: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in api_context.items()
                           if isinstance(v, str | int | float | bool | list | dict)}
    out.update({
        "date_of_service": ctx.date_of_service.isoformat() if ctx.date_of_service else None,
        "payer": ctx.payer,
        "setting": ctx.setting,
        "container": list(ctx.container) if ctx.container else None,
        "discarded": list(ctx.wasted) if ctx.wasted else None,
        "no_waste": ctx.no_waste,
    })
    return out


def _facts_json(pf: PartFacts, view: dict[str, Any]) -> dict[str, Any]:
    part = pf.part
    return {
        "number": part.number,
        "qtype": part.qtype,
        "template": view["template"],
        "rule": part.rule,
        "codes": part.codes,
        "modifiers": part.modifiers,
        "doses": [{"amount": d.amount, "unit": d.unit} for d in part.doses],
        "units_asked": part.units_asked,
        "search_query": part.search_query,
        "facts": [_jsonable(f) for f in pf.facts],
        "notes": view["notes"],
        "suggested": view["suggested"],
    }


def _jsonable(value: Any) -> Any:
    from datetime import date

    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _codes_json(built: list[PartFacts], api_codes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pf in built:
        for code, cf in pf.codes.items():
            out.setdefault(code, {"system": cf.system, "code": code,
                                  "description": cf.descriptor if (cf.system != "CPT" or cf.descriptor_is_cpt) else None,
                                  "source": cf.source, "status": cf.status, "billable": cf.billable})
    for c in api_codes:
        key = str(c.get("code", ""))
        if key and key not in out:
            out[key] = dict(c)
    return list(out.values())


def _findings_json(built: list[PartFacts], api_findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for pf in built:
        for f in pf.facts:
            if f["kind"] in ("ptp", "mue", "aoc", "units", "icd_relation", "release_age"):
                out.append({"kind": f["kind"], "codes": f["codes"], "detail": f["text"],
                            "source": f["source"], "part": pf.part.number})
    seen = {(f["kind"], tuple(sorted(f["codes"]))) for f in out}
    for f in api_findings:
        key = (str(f.get("kind", "")), tuple(sorted(f.get("codes") or [])))
        if key not in seen:
            out.append(dict(f))
    return out


__all__ = ["DRAFT_FLAGS", "DraftResult", "final_text", "make_draft"]
