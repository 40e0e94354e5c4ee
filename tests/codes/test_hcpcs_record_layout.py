"""The HCPCS importer's fixed-width LAYOUT agrees, field by field, with CMS's own record layout
(``HCPC2026_recordlayout.txt``): each numbered field there gives its length and begin/end
positions, and repeated fields their ``OCCURS MAX``; LAYOUT must place every occurrence exactly
there and leave out only the fillers and the alternative views of positions 1-5."""

from __future__ import annotations

import re
from pathlib import Path

from consultant.codes.importers.hcpcs import LAYOUT
from tests.codes.conftest import CMS, need

RECORD_LAYOUT = CMS / "hcpcs" / "HCPC2026_recordlayout.txt"
FIELD_RE = re.compile(r"^\s{1,4}(\d+)\.\s+(\S.*?)\s*(?:CHAR|NUM|GRP)?\s*$")
POSITIONS_RE = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\d+)\b")
OCCURS_RE = re.compile(r"OCCURS MIN:\s*\d+\s+OCCURS MAX:\s*(\d+)")
# CMS field name -> the LAYOUT name(s) of its occurrences; None: not a field LAYOUT reads (the
# 5-character code is read whole as HCPC; a modifier is its positions 4-5).
NAMES: dict[str, list[str] | None] = {
    "Healthcare Common Procedure Coding System Code": ["HCPC"],
    "HCPCS Code Redefinition Group": None,
    "FILLER": None,
    "HCPCS Modifier Code": None,
    "HCPCS Sequence Number": ["SEQNUM"],
    "HCPCS Record Identification Code": ["RECID"],
    "HCPCS Long Description": ["LONG DESCRIPTION"],
    "HCPCS Short Description": ["SHORT DESCRIPTION"],
    "HCPCS Pricing Indicator Code": [f"PRICE{i}" for i in range(1, 5)],
    "HCPCS Multiple Pricing Indicator Code": ["MULT_PI"],
    "HCPCS Coverage Issues Manual Reference Section Number": ["CIM1", "CIM2", "CIM3"],
    "HCPCS Medicare Carriers Manual Reference Section Number": ["MCM1", "MCM2", "MCM3"],
    "HCPCS Statute Number": ["STATUTE"],
    "HCPCS Lab Certification Code": [f"LABCERT{i}" for i in range(1, 9)],
    "HCPCS Cross Reference Code": [f"XREF{i}" for i in range(1, 6)],
    "HCPCS Coverage Code": ["COV"],
    "HCPCS ASC Payment Group Code": ["ASC_GRP"],
    "HCPCS ASC Payment Group Effective Date": ["ASC_DT"],
    "HCPCS MOG Payment Group Code": ["OPPS"],
    "HCPCS MOG Payment Policy Indicator": ["OPPS_PI"],
    "HCPCS MOG Effective Date": ["OPPS_DT"],
    "HCPCS Processing Note Number": ["PROCNOTE"],
    "HCPCS Berenson-Eggers Type Of Service Code": ["BETOS"],
    "HCPCS Type Of Service Code": [f"TOS{i}" for i in range(1, 6)],
    "HCPCS Anesthesia Base Unit Quantity": ["ANEST_BU"],
    "HCPCS Code Added Date": ["ADD DT"],
    "HCPCS Action Effective Date": ["ACT EFF DT"],
    "HCPCS Termination Date": ["TERM DT"],
    "HCPCS Action Code": ["ACTION CD"],
}


def parse_layout(path: Path) -> list[tuple[int, str, int, int, int, int]]:
    """(number, name, length, begin, end, occurs) of each numbered field of the record."""
    fields: list[tuple[int, str, int, int, int, int]] = []
    pending: tuple[int, str] | None = None
    for line in path.read_text(encoding="latin-1").splitlines():
        if "TABLE OF CODES APPENDIX" in line:
            break
        if (m := FIELD_RE.match(line)) and not POSITIONS_RE.match(line):
            pending = int(m.group(1)), m.group(2).strip()
        elif pending and (m := POSITIONS_RE.match(line)):
            fields.append((*pending, int(m.group(1)), int(m.group(2)), int(m.group(3)), 1))
            pending = None
        elif fields and (m := OCCURS_RE.search(line)):
            fields[-1] = (*fields[-1][:5], int(m.group(1)))
    return fields


def test_layout_parser_reads_every_field_of_the_record() -> None:
    fields = parse_layout(need(RECORD_LAYOUT))
    assert [f[0] for f in fields] == list(range(1, 32))  # fields 1-31, none skipped
    assert all(f[3] + f[2] - 1 == f[4] for f in fields)  # length agrees with begin/end
    assert fields[-1][1:5] == ("FILLER", 27, 294, 320)  # the 320-byte record ends with a filler


def test_hcpcs_layout_matches_the_cms_record_layout() -> None:
    expected: dict[str, tuple[int, int]] = {}
    for _, name, length, begin, end, occurs in parse_layout(need(RECORD_LAYOUT)):
        assert name in NAMES, f"CMS field {name!r} is new: map it (or mark it unused) in NAMES"
        ours = NAMES[name]
        if ours is None:
            continue
        assert len(ours) == occurs, f"{name}: CMS gives {occurs} occurrence(s), LAYOUT has {len(ours)}"
        for k, field in enumerate(ours):
            expected[field] = (begin + k * length, end + k * length)
    actual = {name: (a, b) for name, a, b in LAYOUT}
    assert actual == expected
