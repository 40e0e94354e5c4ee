"""Tests of the labelled-set grader itself, on facts hand-checked in shared/data/cms/SOURCES.md.

The grader decides the expected numbers the product is compared with, so it must be able to
fail: each test states a fact read from the CMS files by hand, not from the grader.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.analysis.labelled import cmsdata, grade

FACT_CODES = {"20610", "99214", "77301", "77306", "77338", "64483", "64484", "J1100", "J1885",
              "J9035", "96372", "G0463"}


@pytest.fixture(scope="module")
def data() -> cmsdata.Data:
    # require_shared skips without ../shared, but fails under CI=true
    return cmsdata.load_data(servers.require_shared(), FACT_CODES)


def case(**label: Any) -> dict[str, Any]:
    label.setdefault("questions", ["bundling"])
    return {"id": "t-1", "category": "bundling", "subject": "", "body": "", "label": label}


def test_20610_99214_indicator_1_in_v30_2_and_v32_2(data: cmsdata.Data) -> None:
    assert cmsdata.ptp_in_force(data, "v30.2", "20610|99214", "2024-08-01") == [1]
    assert cmsdata.ptp_in_force(data, "v32.2", "20610|99214", "2026-07-15") == [1]
    assert cmsdata.ptp_in_force(data, "v32.2", "99214|20610", "2026-07-15") == []
    got = grade.expected(case(codes=["CPT:20610", "CPT:99214"], dos="2026-07-15"), data)
    assert got["numbers"]["ptp:20610|99214"] == [1]
    assert got["findings"] == ["ptp_edit:20610,99214"]


def test_77301_77306_indicator_0_and_77338_no_edit(data: cmsdata.Data) -> None:
    assert cmsdata.ptp_in_force(data, "v32.2", "77301|77306", None) == [0]
    for release in ("v30.1", "v30.2", "v32.2", "ioce"):
        for pair in ("77301|77338", "77338|77301"):
            assert data.ptp[release].get(pair) is None, (release, pair)
    got = grade.expected(case(codes=["CPT:77301", "CPT:77338"], dos="2026-08-03"), data)
    assert got["numbers"]["ptp:77301|77338"] == "none"
    assert not any(f.startswith("ptp") for f in got["findings"])


def test_64484_is_an_add_on_of_64483(data: cmsdata.Data) -> None:
    alone = grade.expected(case(codes=["CPT:64484"], questions=["addon"]), data)
    assert "64483" in alone["numbers"]["addon_primaries:64484"]
    assert "addon_without_primary:64484" in alone["findings"]
    both = grade.expected(case(codes=["CPT:64483", "CPT:64484"], questions=["addon"]), data)
    assert "addon_without_primary:64484" not in both["findings"]


def test_mue_values(data: cmsdata.Data) -> None:
    assert data.mue["J1100"][0] == 120
    assert data.mue["64483"] == (1, 2)
    over = grade.expected(case(codes=["HCPCS:J1100"], questions=["units_mue"],
                               units=[{"code": "J1100", "units": 250}]), data)
    assert over["findings"] == ["mue_exceeded:J1100"]


def test_drug_units_round_up_and_waste(data: cmsdata.Data) -> None:
    toradol = grade.expected(case(codes=["HCPCS:J1885"], questions=["drug_units"],
                                  doses=[{"code": "J1885", "given": 60, "unit": "mg"}]), data)
    assert toradol["numbers"]["units:J1885"] == 4             # per 15 mg
    avastin = grade.expected(case(codes=["HCPCS:J9035"], questions=["drug_units"], doses=[
        {"code": "J9035", "given": 135, "wasted": 65, "unit": "mg"}]), data)  # 10 mg; 2 x 100 mg vials
    assert avastin["numbers"]["units:J9035"] == 14
    assert avastin["numbers"]["waste_units:J9035"] == 6
    small = grade.expected(case(codes=["HCPCS:J1885"], questions=["drug_units"],
                                doses=[{"code": "J1885", "given": 10, "unit": "mg"}]), data)
    assert small["numbers"]["units:J1885"] == 1               # under one unit bills 1


def test_descriptor_forms() -> None:
    assert cmsdata.billing_unit("5% dextrose/normal saline (500 ml = 1 unit)") == (Fraction(500), "ml")
    assert cmsdata.billing_unit("Injection, darbepoetin alfa, 1 microgram (non-esrd use)") == (
        Fraction(1), "mcg")
    assert cmsdata.billing_unit("Injection, acetaminophen, not otherwise specified,10 mg") == (
        Fraction(10), "mg")
    assert cmsdata.billing_unit("Injection, vitamin b-12 cyanocobalamin, up to 1000 mcg") == (
        Fraction(1000), "mcg")
    assert cmsdata.billing_unit("Hyaluronan or derivative, hyalgan, supartz or visco-3, for "
                                "intra-articular injection, per dose") is None
    with pytest.raises(cmsdata.LabelError):
        cmsdata.billing_unit("Injection, betamethasone acetate 3 mg and betamethasone sodium "
                             "phosphate 3 mg")


def test_icd_header_seventh_and_excludes1(data: cmsdata.Data) -> None:
    header = grade.expected(case(codes=["ICD:E11.2"], questions=["diagnosis"]), data)
    assert header["numbers"]["children:E11.2"] == ["E11.21", "E11.22", "E11.29"]
    assert header["findings"] == ["not_billable:E11.2"]
    seventh = grade.expected(case(codes=["ICD:S52.521"], questions=["diagnosis"]), data)
    assert seventh["findings"] == ["missing_7th_character:S52.521"]
    assert "A" in seventh["numbers"]["seventh:S52.521"]
    assert data.icd.billable("S52.521A") and not data.icd.billable("S52.521")
    pair = grade.expected(case(codes=["ICD:E10.9", "ICD:E11.9"], questions=["diagnosis"]), data)
    assert any(f.startswith("excludes1_conflict:") for f in pair["findings"])


def test_unknown_label_code_is_an_error(data: cmsdata.Data) -> None:
    with pytest.raises(cmsdata.LabelError):
        grade.expected(case(codes=["HCPCS:J1888"], questions=["code_definition"]), data)
    with pytest.raises(cmsdata.LabelError):
        grade.expected(case(codes=["ICD:E11.99"], questions=["diagnosis"]), data)


def test_every_case_grades(shared: Path) -> None:
    result = grade.expected_all(shared)
    assert len(result) >= 1
    assert all(e["questions"] for e in result.values())


def test_the_set_has_the_agreed_shape() -> None:
    """LABELLED.md: >= 160 mails, >= 10 per category, drug_units >= 20, look-alikes and
    multi-question >= 15; every case file parses and follows the format."""
    cases = grade.load_cases()
    counts: dict[str, int] = {}
    for case in cases.values():
        counts[case["category"]] = counts.get(case["category"], 0) + 1
    assert len(cases) >= 160
    assert set(counts) == set(grade.CATEGORIES.values())
    minimum = {"drug_units": 20, "lookalikes": 15, "multi_question": 15}
    for category, n in counts.items():
        assert n >= minimum.get(category, 10), (category, n)
