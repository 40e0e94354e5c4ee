"""The analysis pipeline's findings: every kind on real CMS data (built-in ICD-10-CM, HCPCS
2026-01, MUE and AOC 2026 Q2, PTP v30.2 practitioner subset), with their wording."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from consultant.analysis import Analysis
from consultant.analysis import analyse as run
from consultant.codes.models import HcpcsCode
from consultant.drafting.draft import finding_details
from tests.codes.conftest import Db


def analyse(session, text: str, **kw) -> Analysis:  # type: ignore[no-untyped-def]
    result = run(session, text, **kw)
    result.findings = finding_details(result.findings)
    return result


def kinds(result: Analysis, kind: str) -> list[dict]:
    return [f for f in result.findings if f["kind"] == kind]


def test_ptp_edit_with_modifier_indicator_1_and_the_modifier_given(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        result = analyse(s, "Knee injection 20610 and E/M 99214-25 on DOS 04/02/2026.")
    [edit] = kinds(result, "ptp_edit")
    assert edit["codes"] == ["20610", "99214"]
    assert "modifier indicator 1" in edit["detail"] and "25" in edit["detail"]
    assert edit["source"] == "NCCI PTP practitioner v30.2 2024-07-01"
    assert result.context.date_of_service == date(2026, 4, 2)


def test_ptp_edit_indicator_0_either_order_in_the_mail(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        result = analyse(s, "We billed 77306 and 77301 together.")
    [edit] = kinds(result, "ptp_edit")
    assert edit["codes"] == ["77301", "77306"] and "modifier indicator 0" in edit["detail"]


def test_ptp_deletion_date_against_date_of_service(loaded_db: Db) -> None:
    text = "0001A with 0591T"
    with loaded_db.session() as s:
        before = analyse(s, text, date_of_service=date(2023, 6, 1))
        after = analyse(s, text, date_of_service=date(2024, 3, 1))
        today = analyse(s, text)
    assert [f["codes"] for f in kinds(before, "ptp_edit")] == [["0001A", "0591T"]]
    assert kinds(after, "ptp_edit") == [] and "last in force 2023-12-31" in kinds(after, "ptp_edit_not_in_force")[0]["detail"]
    assert kinds(today, "ptp_edit") == []


def test_mue_exceeded_stated_units_and_units_from_dose(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        stated = analyse(s, "J1100 x 130 units dexamethasone")
        within = analyse(s, "J1885 ketorolac 60 mg")
        dosed = analyse(s, "J1885 ketorolac 150 mg IM")
    [over] = kinds(stated, "mue_exceeded")
    assert over["codes"] == ["J1100"] and "MUE of 120" in over["detail"]
    assert over["source"] == "NCCI MUE practitioner 2026-04-01"
    j1885 = next(c for c in within.codes if c.code == "J1885")
    assert j1885.extra["billing_unit"]["amount"] == 15
    assert kinds(within, "mue_exceeded") == []
    assert "10 units of J1885" in kinds(dosed, "mue_exceeded")[0]["detail"]


def test_addon_without_its_primary(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        alone = analyse(s, "Facet injection add-on 64484 billed")
        paired = analyse(s, "64483 and 64484")
    [f] = kinds(alone, "addon_without_primary")
    assert f["codes"] == ["64484"] and "64483" in f["detail"] and f["source"] == "NCCI AOC 2026 Q2"
    assert kinds(paired, "addon_without_primary") == []


def test_icd_header_missing_7th_and_excludes1(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        result = analyse(s, "Dx E11.2, S72.001, E10.22 and E11.22")
    [header] = kinds(result, "not_billable")
    assert header["codes"] == ["E11.2"] and "E11.22" in header["detail"] and "E11.29" in header["detail"]
    [seventh] = kinds(result, "missing_7th_character")
    assert seventh["codes"] == ["S72.001"] and "S72.001A" in seventh["detail"]
    conflicts = kinds(result, "excludes1_conflict")
    assert ["E10.22", "E11.22"] in [f["codes"] for f in conflicts] or ["E11.22", "E10.22"] in [f["codes"] for f in conflicts]
    assert all(f["source"].startswith("ICD-10-CM FY2026") for f in conflicts + [header, seventh])


def test_terminated_hcpcs_code(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        code, term = s.execute(select(HcpcsCode.code, HcpcsCode.term_date).where(
            HcpcsCode.term_date < date(2026, 1, 1), HcpcsCode.is_modifier.is_(False)).limit(1)).one()
        result = analyse(s, f"Supply {code} given", date_of_service=date(2026, 2, 1))
        earlier = analyse(s, f"Supply {code} given", date_of_service=term)
    [f] = kinds(result, "terminated_code")
    assert f["codes"] == [code] and term.isoformat() in f["detail"]
    assert kinds(earlier, "terminated_code") == []


def test_unknown_codes_are_findings_not_errors(loaded_db: Db) -> None:
    with loaded_db.session() as s:
        known = set(s.scalars(select(HcpcsCode.code).where(HcpcsCode.code.like("J9%"))))
        missing = next(f"J9{n:03d}" for n in range(1000) if f"J9{n:03d}" not in known and n % 100)
        result = analyse(s, f"Is E11.99 right? And {missing}? S72.001Z?")
    unknown = {f["codes"][0] for f in kinds(result, "unknown_code")}
    assert {"E11.99", "S72.001Z"} <= unknown
    # J9xxx not in HCPCS: unknown unless it reads as an ICD-10-CM code (J9x.xx)
    assert missing in unknown or any(c.code.replace(".", "") == missing for c in result.codes)


def test_empty_database_still_answers(empty_db: Db) -> None:
    with empty_db.session() as s:
        result = analyse(s, "99214-25 with J1885 x 4 units; dx E11.22, Medicare, office")
    by_code = {c.code: c for c in result.codes}
    assert by_code["99214"].description is None and by_code["99214"].modifiers == ["25"]
    assert by_code["E11.22"].source.startswith("ICD-10-CM FY2026 (simple-icd-10-cm ")  # type: ignore[union-attr]
    assert by_code["J1885"].system == "HCPCS" and by_code["J1885"].description is None
    assert by_code["J1885"].units == 4
    [missing] = kinds(result, "release_missing")
    assert missing["codes"] == ["J1885"]
    assert result.context.payer == "Medicare" and result.context.setting == "office"
    assert result.releases == [by_code["E11.22"].source]


def test_lookalikes_in_a_real_looking_mail(loaded_db: Db) -> None:
    text = ("Please call 555-213-4567 or (800) 633-4227. Claim #99213457, member ID 77301.\n"
            "Mail: 1200 Main St, Austin, TX 78701-1234. Amount $99214.00; balance 20,610.\n"
            "Seen 03/14/2026; visit code 99213.")
    with loaded_db.session() as s:
        result = analyse(s, text)
    assert [c.code for c in result.codes if c.system != "MODIFIER"] == ["99213"]


def test_excludes1_written_at_section_and_chapter_level(loaded_db: Db) -> None:
    # Section O00-O08 excludes "continuing pregnancy in multiple gestation after abortion of one
    # fetus or more (O31.1-, O31.3-)"; chapter 15 excludes "supervision of normal pregnancy (Z34.-)".
    # Neither note is on the codes' own categories, so only chapter/section notes find them.
    with loaded_db.session() as s:
        result = analyse(s, "Dx O03.9 with O31.10X0, and O03.9 with Z34.00")
    found = {tuple(f["codes"]): f["detail"] for f in kinds(result, "excludes1_conflict")}
    assert "Excludes1 at section O00-O08" in found[("O03.9", "O31.10X0")]
    assert "Excludes1 at chapter 15" in found[("O03.9", "Z34.00")]
    with loaded_db.session() as s:
        unrelated = analyse(s, "Dx O03.9 and E11.22")
    assert kinds(unrelated, "excludes1_conflict") == []
