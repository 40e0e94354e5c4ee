"""``lookup`` (codes show) and ``search`` on real data."""

from __future__ import annotations

import pytest

from consultant.codes.api import lookup, search
from tests.codes.conftest import Db


def test_show_the_codes_the_issue_names(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        j1885, e1122, n1831 = lookup(s, "J1885"), lookup(s, "E11.22"), lookup(s, "N1831")
        c64484, c77301 = lookup(s, "64484"), lookup(s, "77301", ptp_limit=None)
    assert (j1885["system"], j1885["source"]) == ("HCPCS", "HCPCS 2026-01")
    assert j1885["description"] == "Injection, ketorolac tromethamine, per 15 mg"
    assert j1885["billing_unit"] == {"amount": 15, "unit": "mg", "text": "per 15 mg", "up_to": False, "per_item": False}
    assert j1885["pricing"] == [{"code": "51", "meaning": "Drugs"}]
    assert j1885["mue"][0]["source"] == "NCCI MUE practitioner 2026-04-01"
    assert e1122["billable"] and e1122["source"].startswith("ICD-10-CM FY2026")
    assert any("N18.1-N18.6" in n for note in e1122["notes"] if note["kind"] == "use_additional" for n in note["notes"])
    assert n1831["code"] == "N18.31" and n1831["description"] == "Chronic kidney disease, stage 3a"
    assert any(note["kind"] == "code_first" and note["from"] == "N18" for note in n1831["notes"])
    assert c64484["description"] is None and "AMA" in c64484["note"]
    assert c64484["addon"]["primaries"] == ["64483"] and c64484["addon"]["source"] == "NCCI AOC 2026 Q2"
    assert (c77301["mue"][0]["value"], c77301["mue"][0]["mai"]) == (1, 3)
    col1 = c77301["ptp"][0]["as_column_1"]
    assert col1["shown"] == col1["in_force"] > 50
    edits = {e["column_2"]: e for e in col1["edits"]}
    assert edits["77306"]["modifier_indicator"] == 0
    assert edits["77306"]["source"] == "NCCI PTP practitioner v30.2 2024-07-01"
    assert "77338" not in edits


def test_icd_header_and_seventh_character_facts(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        header, needs7 = lookup(s, "E11.2"), lookup(s, "S72.001")
        assert lookup(s, "X99.999") is None
    assert header["header"] and [c["code"] for c in header["children"]] == ["E11.21", "E11.22", "E11.29"]
    assert needs7["needs_7th_character"] and needs7["seven_chr_def"]["A"].startswith("initial encounter")
    assert "S72.001A" in [c["code"] for c in needs7["children"]]


@pytest.mark.parametrize("query, system, expected", [
    ("ketorolac injection", None, "J1885"),
    ("type 2 diabetes with diabetic chronic kidney disease", None, "E11.22"),
    ("chronic kidney disease stage 3a", "ICD-10-CM", "N18.31"),
    ("Traumatic subdural hemorrhage NOS", "ICD-10-CM", "S06.5XA"),  # an inclusion term only
    ("right side", "MODIFIER", "RT"),
])
def test_search_ranks_the_expected_code_first(loaded_db: Db, query: str, system: str | None, expected: str) -> None:
    with loaded_db.session() as s:
        hits = search(s, query, system=system, limit=5)
    assert hits and hits[0]["code"] == expected, hits
    assert hits[0]["source"]
    assert all(h["system"] == system for h in hits if system)


def test_search_without_imports_uses_builtin_icd(empty_db: Db) -> None:
    with empty_db.session() as s:
        hits = search(s, "type 2 diabetes with diabetic chronic kidney disease", limit=3)
        assert search(s, "ketorolac injection", system="HCPCS") == []
    assert hits[0]["code"] == "E11.22" and "simple-icd-10-cm" in hits[0]["source"]


def test_icd_section_and_chapter_with_their_notes(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        o039 = lookup(s, "O03.9")
    assert o039["section"] == {"name": "O00-O08", "range": "O00-O08",
                               "description": "Pregnancy with abortive outcome (O00-O08)"}
    assert o039["chapter"]["name"] == "15" and o039["chapter"]["range"] == "O00-O9A"
    levels = [note["from"] for note in o039["notes"]]
    # Nearest first: the code, its category, then its section, then its chapter.
    assert levels.index("O03") < levels.index("section O00-O08") < levels.index("chapter 15")
    chapter_notes = [n for note in o039["notes"] if note["from"] == "chapter 15" for n in note["notes"]]
    assert any("MATERNAL RECORDS" in n for n in chapter_notes)
