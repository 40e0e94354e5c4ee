"""The code knowledge base's public surface used by the drafting worker.

CONTRACT (owned by consultant/codes; the pipeline only calls these):

    analyse(session, text, *, date_of_service=None) -> Analysis

``Analysis.codes``    list of {"system", "code", "description", "source", ...}
                      system is one of "CPT", "HCPCS", "ICD-10-CM", "MODIFIER"
``Analysis.findings`` list of {"kind", "codes", "detail", "source"}
``Analysis.context``  dict: units, doses, modifiers, date_of_service, payer, setting
``Analysis.releases`` list of data-release labels the facts above cite

It never raises for anything found in a mail (unknown codes become findings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.orm import Session


@dataclass
class Analysis:
    codes: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    releases: list[str] = field(default_factory=list)


def analyse(session: Session, text: str, *, date_of_service: date | None = None) -> Analysis:
    """Placeholder until the knowledge base lands: finds nothing."""
    return Analysis()
