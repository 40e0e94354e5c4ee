"""Spotting patient identifiers in a question, so the consultant sees them and the reply warns.

Coding questions never need who the patient is.  These rules look for the identifiers requesters
paste by habit (a name with a birth date, MRN, SSN, member or Medicare IDs); each hit is recorded
by name.  They are deliberately simple and err on the side of flagging: a flag costs the
consultant a glance, a miss puts PHI in a reply thread.  ``redact`` removes the matched text
wherever the question is echoed back in the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DATE = r"(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{2}-\d{2}|[A-Z][a-z]{2,8}\.? \d{1,2},? \d{4})"
_NAME = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
# MBI: 11 characters, positions fixed by CMS (no S, L, O, I, B, Z letters).
_MBI_L = "AC-HJKMNP-RT-Y"
_MBI = rf"[1-9][{_MBI_L}][{_MBI_L}0-9]\d[{_MBI_L}][{_MBI_L}0-9]\d[{_MBI_L}][{_MBI_L}]\d\d"

RULES: list[tuple[str, re.Pattern[str]]] = [
    ("phi_ssn", re.compile(r"\b(?:SSN|social security(?: number| no\.?)?)\s*[:#]?\s*\d{3}-?\d{2}-?\d{4}\b|"
                           r"\b\d{3}-\d{2}-\d{4}\b", re.I)),
    ("phi_dob", re.compile(rf"\b(?:DOB|D\.O\.B\.?|date of birth|birth ?date|born(?: on)?)\s*[:#-]?\s*{_DATE}", re.I)),
    ("phi_mrn", re.compile(r"\b(?:MRN|MR#|medical record(?: number| no\.?| #)?|chart(?: number| no\.?| #)|"
                           r"acct(?:ount)?(?: number| no\.?| #)?)\s*[:#]?\s*[A-Z0-9-]*\d{4,}[A-Z0-9-]*", re.I)),
    ("phi_member_id", re.compile(r"\b(?:member|subscriber|policy|insurance|medicaid|medicare|MBI|HICN|ID)"
                                 r"\s*(?:ID|number|no\.?|#)\s*[:#]?\s*[A-Z0-9-]*\d{3,}[A-Z0-9-]*", re.I)),
    ("phi_mbi", re.compile(rf"\b{_MBI}\b")),
    ("phi_patient_name", re.compile(rf"\b(?i:patient(?: name)?|pt(?: name)?|name)\s*[:=-]\s*{_NAME}\s+{_NAME}\b|"
                                    rf"\b(?:Mr|Mrs|Ms|Miss)\.?\s+{_NAME}(?:\s+{_NAME})?\b")),
]


@dataclass
class PhiCheck:
    hits: list[str]
    spans: list[tuple[int, int]]

    @property
    def suspected(self) -> bool:
        return bool(self.hits)


def check(text: str) -> PhiCheck:
    hits: list[str] = []
    spans: list[tuple[int, int]] = []
    for name, pattern in RULES:
        for m in pattern.finditer(text):
            if name not in hits:
                hits.append(name)
            spans.append(m.span())
    return PhiCheck(hits, spans)


def redact(text: str) -> str:
    """``text`` with every suspected identifier replaced by "[removed]"."""
    spans = sorted(check(text).spans)
    out, last = [], 0
    for start, end in spans:
        if start < last:
            last = max(last, end)
            continue
        out.append(text[last:start])
        out.append("[removed]")
        last = end
    out.append(text[last:])
    return "".join(out)
