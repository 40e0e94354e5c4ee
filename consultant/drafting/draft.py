"""Turn a case's question text into a machine draft: codes and findings from the knowledge base,
rendered through a reply template."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from consultant.codes import api as codes_api
from consultant.drafting.templating import render_pair
from consultant.settings import Settings


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


def make_draft(session: Session, settings: Settings, *, question: str, subject: str,
               requester_name: str | None) -> DraftResult:
    """Analyse ``question`` (plain new text of the thread) and render the answer template."""
    analysis = codes_api.analyse(session, question)
    context = {
        "requester_name": requester_name or "",
        "subject": subject,
        "codes": analysis.codes,
        "findings": analysis.findings,
        "suggested": "",
    }
    text, html = render_pair("answer", context, settings.service.template_dir)
    return DraftResult(
        template="answer", kind="answer", text=text, html=html, codes=analysis.codes,
        findings=analysis.findings,
        facts={"context": analysis.context, "releases": analysis.releases},
    )
