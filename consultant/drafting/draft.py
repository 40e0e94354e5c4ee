"""Turn a case's question text into a machine draft: one analysis (``consultant.analysis``),
then the reply templates word it.

When an answer rests on NCCI edits (bundling, modifier, units/MUE) and the mail names neither
the payer nor the date of service, the draft is instead a clarifying question
(``kind="needs_info"``), which costs the requester no quota.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Any

from sqlalchemy.orm import Session

from consultant.analysis import Analysis, QType, analyse
from consultant.analysis.model import Part
from consultant.drafting import notes
from consultant.drafting.templating import environment, render_pair
from consultant.privacy.redact import Summary
from consultant.settings import Settings

# Question types whose answer rests on NCCI edits: CMS (Medicare/Medicaid) rules that change
# quarterly, so the payer and the date of service decide the answer.
NEEDS_PAYER_AND_DATE = (QType.BUNDLING, QType.MODIFIER, QType.UNITS_MUE)
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
    result = analyse(session, question, subject=subject)
    missing = missing_info(result)
    flags: list[str] = []
    rule_hits = [f"question_rule:{p.question.rule}" for p in result.parts]
    if redaction.found:
        rule_hits += ["phi_suspected", *redaction.rules]
        flags.append("phi_suspected")
    if missing:
        rule_hits.append("needs_info:" + "+".join(missing))
    findings = finding_details(result.findings, settings.service.template_dir)
    parts = [part_view(session, p) for p in result.parts]
    context = {
        "requester_name": requester_name or "",
        "subject": subject,
        "phi": redaction.found,
        "phi_kinds": redaction.described(),
        "service_name": settings.service.name,
        "parts": parts,
        "analysis": result,
        "missing": missing,
    }
    template, kind = ("needs_info", "needs_info") if missing else ("answer", "answer")
    text_part, html_part = render_pair(template, context, settings.service.template_dir)
    facts = {
        "context": jsonable(result.context),
        "parts": [{**jsonable(p), "notes": v["notes"]} for p, v in zip(result.parts, parts, strict=True)],
        "releases": result.releases,
        "cpt_descriptors": result.cpt_descriptors,
        "missing": missing,
        "phi": redaction.as_json(),
        "truncated": result.truncated,
        "rejected": [list(r) for r in result.rejected],
        "analysis_count": 1,
    }
    return DraftResult(
        template=template, kind=kind, text=text_part, html=html_part,
        codes=[{"system": str(c.system), "code": c.code, "description": c.description, "source": c.source,
                "modifiers": c.modifiers, "units": c.units, **jsonable(c.extra)} for c in result.codes],
        findings=findings, facts=facts, question_types=[str(p.question.qtype) for p in result.parts],
        rule_hits=rule_hits, flags=flags,
    )


def finding_details(findings: list[dict[str, Any]], template_dir: str = "") -> list[dict[str, Any]]:
    """The findings with their one-line wording (``replies/_findings.txt.j2``) as ``detail``."""
    module = environment(template_dir).get_template("replies/_findings.txt.j2").module
    return [{**jsonable(f), "detail": " ".join(str(module.detail(f)).split())}  # type: ignore[attr-defined]
            for f in findings]


def missing_info(result: Analysis) -> list[str]:
    """What to ask before answering: only what an NCCI-based answer depends on."""
    needing = [p for p in result.parts if p.question.qtype in NEEDS_PAYER_AND_DATE
               and any(c.procedure for c in result.codes if c.code in p.question.codes)]
    if not needing:
        return []
    missing = []
    if result.context.payer is None:
        missing.append("payer")
    if result.context.date_of_service is None:
        missing.append("date_of_service")
    return missing


def part_view(session: Session, part: Part) -> dict[str, Any]:
    """What a question's template needs beside the part itself: its quote and the notes."""
    quote = part.question.text  # already redacted (consultant.privacy) before drafting
    if len(quote) > QUOTE_CHARS:
        quote = quote[:QUOTE_CHARS].rsplit(" ", 1)[0] + " …"
    return {"part": part, "q": part.question, "quote": quote, "template": str(part.question.qtype),
            "notes": notes.notes_for(session, part.question.codes),
            "start_marker": SUGGESTED_START.format(n=""), "end_marker": SUGGESTED_END.format(n="")}


def final_text(draft_text: str) -> str:
    """The draft as the requester should read it: the suggested-answer marker lines removed."""
    cleaned = _MARKER.sub("", draft_text)
    return re.sub(r"\n{3,}", "\n\n", cleaned).strip() + "\n"


def jsonable(value: Any) -> Any:
    """Dataclasses, enums and dates as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k if not isinstance(k, tuple) else "|".join(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    return value


__all__ = ["DRAFT_FLAGS", "DraftResult", "final_text", "make_draft"]
