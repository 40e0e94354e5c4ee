"""Extraction from mail text: codes, modifiers, units, doses, date of service, payer, setting,
and the look-alikes that must not become codes."""

from __future__ import annotations

from datetime import date

import pytest

from consultant.codes.extract import extract


def codes(text: str) -> list[str]:
    return [m.code for m in extract(text).mentions]


@pytest.mark.parametrize("text", [
    "Call 555-123-4567 or (555) 123-4567 or 555.123.4567",
    "Our office: 12 Oak Rd, Denver, CO 80202 (ZIP 80203, also 80202-1234)",
    "Paid $99213 and $1,250.00; balance 99213.00; total 20,610",
    "DOS 03/14/2026, 2026-03-14, 3/14/26, 14:30",
    "Claim #12345, claim number 99214, member ID 77301, NPI 1234567890, ref: 20610",
])
def test_lookalikes_are_not_codes(text: str) -> None:
    assert codes(text) == []


def test_code_forms() -> None:
    text = "CPT 99214, 0001F, 0591T and 0001A; HCPCS J1885; dx E11.22, e1122, S72.001A and M17.11."
    found = extract(text).mentions
    assert [(m.code, m.kind) for m in found] == [
        ("99214", "cpt"), ("0001F", "cpt"), ("0591T", "cpt"), ("0001A", "cpt"), ("J1885", "alnum"),
        ("E11.22", "icd"), ("E1122", "alnum"), ("S72.001A", "icd"), ("M17.11", "icd")]


def test_modifier_forms_are_attributed_to_their_code() -> None:
    ext = extract("99214-25 with 20610-RT-59\nmodifier XS on 64483\n20611 LT/RT\nAppend -59 to 97140?")
    got = {(m["modifier"], m["code"]) for m in ext.modifiers}
    assert got == {("25", "99214"), ("RT", "20610"), ("59", "20610"), ("XS", "64483"),
                   ("LT", "20611"), ("RT", "20611"), ("59", "97140")}


def test_words_are_not_modifiers() -> None:
    ext = extract("AS we discussed AT the visit, GO ahead with 99213 and the 25 minute visit")
    assert ext.modifiers == []


def test_units_and_doses() -> None:
    ext = extract("J1885 x 4 units, 60 mg IM\n96372 units: 2\nJ1100 10 mg")
    assert [(u["code"], u["units"]) for u in ext.units] == [("J1885", 4), ("96372", 2)]
    assert [(d["code"], d["amount"], d["unit"]) for d in ext.doses] == [("J1885", 60, "mg"), ("J1100", 10, "mg")]


@pytest.mark.parametrize("text, expected", [
    ("DOS: 03/14/2026", date(2026, 3, 14)),
    ("date of service was March 4, 2026", date(2026, 3, 4)),
    ("service date 2026-02-28", date(2026, 2, 28)),
    ("patient seen on 4 Jan 2026", date(2026, 1, 4)),
    ("billed 01/02/2026 for a 2025 visit", None),
])
def test_date_of_service(text: str, expected: date | None) -> None:
    assert extract(text).date_of_service == expected


@pytest.mark.parametrize("text, payer, setting", [
    ("Medicare patient, office visit", "Medicare", "office"),
    ("Medicare Advantage plan, POS 22", "Medicare Advantage", "hospital outpatient"),
    ("Medicaid, hospital outpatient department", "Medicaid", "hospital outpatient"),
    ("BCBS commercial plan at the ASC", "commercial", "ASC"),
    ("no payer named", None, None),
])
def test_payer_and_setting(text: str, payer: str | None, setting: str | None) -> None:
    ext = extract(text)
    assert (ext.payer, ext.setting) == (payer, setting)


def test_modifiers_beside_many_codes_are_read_as_with_few() -> None:
    # The free-span check is a bisection over the taken spans (it was a scan of all of them,
    # quadratic on a long mail full of code-like tokens): after 600 codes have taken their
    # spans, a modifier written onto a code and one given by keyword are read as in a short mail.
    filler = " ".join(f"9921{i % 5}" for i in range(600))
    ex = extract(filler + " Can 64483-RT be billed with 64484 modifier 59? Also 20610 25")
    by_code = {(m["code"], m["modifier"], m["how"]) for m in ex.modifiers}
    assert ("64483", "RT", "attached") in by_code
    assert ("64484", "59", "keyword") in by_code
    assert [m for m in ex.modifiers if m["modifier"] == "RT"] == [
        {"modifier": "RT", "code": "64483", "how": "attached"}]
    assert len([m for m in ex.mentions if m.code == "64483"]) == 1
