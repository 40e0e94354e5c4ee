"""Code number formats shared by importers, lookup and extraction."""

from __future__ import annotations

import re

# CPT: five digits, or four digits and a letter (Category II F, III T, PLA U, vaccine A, MAAA M).
CPT_RE = re.compile(r"^(?:\d{5}|\d{4}[AFMTU])$")
# HCPCS Level II: a letter A-V and four digits.
HCPCS_RE = re.compile(r"^[A-V][0-9]{4}$")
# ICD-10-CM: a letter (not U), a digit, a digit or letter, then up to four more after the dot.
ICD_RE = re.compile(r"^[A-TV-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?$")


def normalise_code(code: str) -> str:
    """Upper-case; an ICD-10-CM code written without its dot gets it after the third character."""
    code = code.strip().upper().replace(" ", "")
    if CPT_RE.match(code) or HCPCS_RE.match(code):
        return code
    if re.fullmatch(r"[A-TV-Z]\d[0-9A-Z][0-9A-Z]{1,4}", code):
        return code[:3] + "." + code[3:]
    return code


def is_code(code: str) -> bool:
    """Is a normalised code shaped like a CPT, HCPCS Level II or ICD-10-CM code?"""
    return bool(CPT_RE.match(code) or HCPCS_RE.match(code) or ICD_RE.match(code))
