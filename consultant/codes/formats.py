"""Code number formats shared by importers, lookup and extraction."""

from __future__ import annotations

import re

# CPT: five digits, or four digits and a letter (Category II F, III T, PLA U, vaccine A, MAAA M).
CPT_RE = re.compile(r"^(?:\d{5}|\d{4}[AFMTU])$")
# HCPCS Level II: a letter A-V and four digits.
HCPCS_RE = re.compile(r"^[A-V][0-9]{4}$")
