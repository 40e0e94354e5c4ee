"""Question splitting, typing rules and context extraction (no database)."""

from __future__ import annotations

from datetime import date

import pytest

from consultant.drafting.questions import (
    date_of_service,
    find_codes,
    find_modifiers,
    find_payer,
    mail_context,
    normalise_code,
    parse_question,
)


@pytest.mark.parametrize(("text", "codes"), [
    ("Can 20610 be billed with 99214?", ["20610", "99214"]),
    ("J1885 x 4 and E11.22, N18.31.", ["J1885", "E11.22", "N18.31"]),
    ("Category III 0275T and PLA 0001U", ["0275T", "0001U"]),
    ("DOS 03/12/2026, call 555-123-4567, $20610.00, ZIP 60614-1234", []),
    ("Code E119 written without the dot", ["E11.9"]),
])
def test_find_codes(text: str, codes: list[str]) -> None:
    assert find_codes(text) == codes


def test_normalise_code_keeps_hcpcs_and_dots_icd() -> None:
    assert normalise_code("j1885") == "J1885"
    assert normalise_code("e119") == "E11.9"
    assert normalise_code("E1122") == "E1122"  # the HCPCS shape wins: write ICD codes with the dot
    assert normalise_code("99214") == "99214"


def test_modifiers() -> None:
    assert find_modifiers("Use modifier 25 or 59 on 99214-25; maybe XU") == ["25", "59", "XU"]
    assert find_modifiers("DOS 2026-05-01") == []


@pytest.mark.parametrize(("text", "expected"), [
    ("DOB 01/02/1950, DOS 3/3/2026", date(2026, 3, 3)),
    ("seen on March 12, 2026", date(2026, 3, 12)),
    ("date of service 2026-04-27", date(2026, 4, 27)),
    ("born 1950-01-02 only", None),
    ("no date here", None),
])
def test_date_of_service(text: str, expected: date | None) -> None:
    assert date_of_service(text)[0] == expected


@pytest.mark.parametrize(("text", "payer"), [
    ("Medicare Advantage plan", "Medicare Advantage"),
    ("traditional Medicare", "Medicare"),
    ("Ohio Medicaid", "Medicaid"),
    ("BCBS PPO", "commercial"),
    ("UnitedHealthcare", "commercial"),
    ("no payer said", None),
])
def test_payer(text: str, payer: str | None) -> None:
    assert find_payer(text) == payer


def test_container_and_waste() -> None:
    ctx = mail_context("375 mg from a 400 mg single-dose vial")
    assert ctx.container == (400.0, "mg") and ctx.wasted is None
    ctx = mail_context("155 units injected, 45 units discarded")
    assert ctx.wasted == (45.0, "units")
    assert mail_context("No waste.").no_waste is True


def test_numbered_questions_are_parts_and_preamble_is_shared() -> None:
    ctx, parts = parse_question("Medicare, DOS 4/20/2026.\n\n1. Can 20610 be billed with 99213?\n"
                                "2) How many units of J3301 for 80 mg?\nQ3: What is M17.11?\n")
    assert [p.number for p in parts] == [1, 2, 3]
    assert [p.qtype for p in parts] == ["bundling", "drug_units", "code_definition"]
    assert ctx.payer == "Medicare" and ctx.date_of_service == date(2026, 4, 20)


def test_follow_on_question_without_codes_joins_the_previous_part() -> None:
    _, parts = parse_question("Can 20610 be billed with 99214 the same day? If so, which modifier?")
    assert len(parts) == 1 and parts[0].qtype == "modifier"


def test_signature_and_greeting_are_not_questions() -> None:
    _, parts = parse_question("Hi team,\n\nHow many units of 77301 can we bill?\n\nSam Okafor\nSummit Pain\n")
    assert len(parts) == 1 and parts[0].text == "How many units of 77301 can we bill?"


@pytest.mark.parametrize(("text", "qtype", "rule"), [
    ("What is the CPT code for knee arthroscopy with meniscectomy?", "code_search", "asks_code_for_description"),
    ("Is J1030 still valid?", "code_definition", "asks_what_code_means"),
    ("We gave 8 mg ondansetron J2405, units?", "drug_units", "drug_dose_with_j_code"),
    ("Should E11.22 be sequenced before N18.31?", "diagnosis", "diagnosis_codes_or_sequencing"),
    ("Can we get paid for a phone call?", "other", "no_rule_matched"),
    ("Is an MUE of 1 for 64483 per side?", "units_mue", "asks_units_or_mue"),
])
def test_rules(text: str, qtype: str, rule: str) -> None:
    part = parse_question(text)[1][0]
    assert (part.qtype, part.rule) == (qtype, rule)

