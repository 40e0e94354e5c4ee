"""Golden tests: each realistic mail in mails/ against the real CMS/CDC data.

They check what the draft *decides* (question types, template, kind, the facts with their numbers
and sources, the pre-filled suggestion) rather than whole rendered texts, so wording can change
without rewriting them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from consultant.drafting.draft import DraftResult, make_draft
from consultant.mail.parse import parse_mail
from consultant.privacy.mail import redact_mail
from consultant.settings import Settings
from tests.drafting.conftest import MAILS, load_mail

HCPCS = "HCPCS 2026-01"
MUE = "NCCI MUE practitioner 2026-04-01"
AOC = "NCCI AOC 2026 Q2"
PTP = "NCCI PTP practitioner v30.2 2024-07-01"
ICD = "ICD-10-CM FY2026 (April 1, 2026 update)"


def draft_mail(factory: sessionmaker[Session], settings: Settings, name: str) -> DraftResult:
    # As processing does: drafting only ever sees the redacted mail.
    red = redact_mail(parse_mail(load_mail(name)))
    with factory() as session:
        return make_draft(session, settings, question=red.new_text, subject=red.subject,
                          requester_name=red.from_name, redaction=red.summary)


def facts(result: DraftResult, part: int, kind: str) -> list[dict[str, Any]]:
    return [f for f in result.facts["parts"][part - 1]["facts"] if f["kind"] == kind]


def one(result: DraftResult, part: int, kind: str, **match: Any) -> dict[str, Any]:
    found = [f for f in facts(result, part, kind) if all(f.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (kind, match, facts(result, part, kind))
    return found[0]


def suggested(result: DraftResult, part: int = 1) -> str:
    return str(result.facts["parts"][part - 1]["suggested"])


# --- checks per mail --------------------------------------------------------------------------
def c_20610_99214(r: DraftResult) -> None:
    edit = one(r, 1, "ptp", column_1="20610", column_2="99214")
    assert edit["indicator"] == 1 and edit["source"] == PTP
    assert "CPT Manual or CMS manual coding instruction" in edit["text"]
    assert "modifier 25" in suggested(r) and "E/M (99214)" in suggested(r)


def c_77301_77306(r: DraftResult) -> None:
    edit = one(r, 1, "ptp", column_1="77301", column_2="77306")
    assert edit["indicator"] == 0
    s = suggested(r)
    assert s.startswith("No. 77301 and 77306 cannot be reported together")
    assert "no modifier bypasses this edit" in s and "[Consultant:" not in s


def c_77301_77338(r: DraftResult) -> None:
    edit = one(r, 1, "ptp")
    assert edit["indicator"] is None and edit["source"] == PTP
    assert "no NCCI PTP edit in either order" in edit["text"]
    assert "NCCI has no procedure-to-procedure edit between 77301 and 77338" in suggested(r)


def c_64483_64484(r: DraftResult) -> None:
    addon = one(r, 1, "aoc", addon="64484")
    assert addon["primaries"] == ["64483"] and addon["primary_present"] and addon["source"] == AOC
    assert one(r, 1, "ptp")["indicator"] is None  # no PTP edit between the two (SOURCES.md)
    assert "64484 is an add-on code and 64483 is an eligible primary" in suggested(r)


def c_45385_45380(r: DraftResult) -> None:
    edit = one(r, 1, "ptp", column_1="45385", column_2="45380")
    assert edit["indicator"] == 1 and "More extensive procedure" in edit["text"]
    assert "XE/XP/XS/XU" in suggested(r) and "modifier 25" not in suggested(r)


def c_43239_43235(r: DraftResult) -> None:
    edit = one(r, 1, "ptp", column_1="43239", column_2="43235")
    assert edit["indicator"] == 0 and "CPT Separate procedure definition" in edit["text"]
    assert r.facts["context"]["payer"] == "Medicaid"


def c_commercial(r: DraftResult) -> None:
    assert r.facts["context"]["payer"] == "commercial"
    assert one(r, 1, "ptp", column_1="20610")["indicator"] == 1
    assert "for a commercial payer they apply only where the payer adopts them" in suggested(r)


def c_mod_25_59(r: DraftResult) -> None:
    assert one(r, 1, "ptp", column_1="20610", column_2="99214")["indicator"] == 1
    assert "not 59 or an X modifier" in suggested(r)


def c_mod_11042_97597(r: DraftResult) -> None:
    edit = one(r, 1, "ptp", column_1="11042", column_2="97597")
    assert edit["indicator"] == 1
    assert "append an NCCI-associated modifier to 97597" in suggested(r)


def c_mod_xu(r: DraftResult) -> None:
    edit = one(r, 1, "ptp", column_1="29880", column_2="29881")
    assert edit["indicator"] == 1 and "HCPCS/CPT procedure code definition" in edit["text"]
    xu = one(r, 1, "modifier")
    assert xu["source"] == HCPCS and xu["text"].startswith("Modifier XU: ")
    assert r.facts["context"]["payer"] == "Medicare Advantage"


def c_units_77301(r: DraftResult) -> None:
    mue = one(r, 1, "mue")
    assert (mue["value"], mue["mai"], mue["asked"], mue["source"]) == (1, 3, 2, MUE)
    assert "appeal only with documentation of medical necessity" in suggested(r)


def c_units_64483(r: DraftResult) -> None:
    mue = one(r, 1, "mue")
    assert (mue["value"], mue["mai"], mue["asked"]) == (1, 2, 2)
    assert "not payable, even on appeal" in suggested(r)


def c_units_97110(r: DraftResult) -> None:
    mue = one(r, 1, "mue")
    assert (mue["value"], mue["mai"], mue["asked"]) == (6, 3, 4)
    assert "4 units is within the limit" in suggested(r)


def c_units_11045(r: DraftResult) -> None:
    assert one(r, 1, "mue", codes=["11045"])["value"] == 12
    assert one(r, 1, "mue", codes=["11042"])["value"] == 1
    assert one(r, 1, "aoc", addon="11045")["primary_present"] is True


def units_fact(r: DraftResult, part: int = 1) -> dict[str, Any]:
    return one(r, part, "units")


def c_j1885(r: DraftResult) -> None:
    u = units_fact(r)
    assert u["units"] == 4 and u["modifier"] == "JZ" and u["jw_units"] is None
    assert u["steps"][0] == "60 mg ÷ 15 mg per unit = 4 units of J1885"
    assert u["steps"][-1] == f"4 units reported is within the MUE of 8 (MAI 3; {MUE})"
    assert u["source"] == HCPCS
    assert one(r, 1, "descriptor")["text"] == "HCPCS J1885: Injection, ketorolac tromethamine, per 15 mg"


def c_j9035(r: DraftResult) -> None:
    u = units_fact(r)
    assert (u["units"], u["jw_units"], u["modifier"]) == (38, 2, "JW")
    assert "375 mg ÷ 10 mg per unit = 37.5, rounded up to 38 units of J9035" in u["steps"][0]
    assert "J9035-JW × 2 units" in suggested(r)
    assert "within the MUE of 230 (MAI 3)" in suggested(r)


def c_j1100(r: DraftResult) -> None:
    u = units_fact(r)
    assert (u["units"], u["modifier"]) == (10, "JZ")
    assert "within the MUE of 120" in u["steps"][-1]


def c_j2405(r: DraftResult) -> None:
    u = units_fact(r)
    assert u["units"] == 4 and u["modifier"] is None  # waste not stated: left to the consultant
    assert "[Consultant:" in suggested(r) and "JW" in suggested(r)


def c_j3301(r: DraftResult) -> None:
    assert units_fact(r)["units"] == 4
    assert one(r, 1, "mue", codes=["J3301"])["value"] == 16


def c_j2550(r: DraftResult) -> None:
    u = units_fact(r)
    assert u["units"] == 1 and u["billing_unit"] == "up to 50 mg"
    assert "rounded up to 1 unit" in u["steps"][0]


def c_j1030(r: DraftResult) -> None:
    status = one(r, 1, "status")
    assert status["billable"] is False and "terminated 2024-03-31" in status["text"]
    assert "J1030 was terminated on 2024-03-31" in suggested(r)
    assert not suggested(r).startswith("Report")


def c_j0585(r: DraftResult) -> None:
    u = units_fact(r)
    assert (u["units"], u["jw_units"], u["modifier"]) == (155, 45, "JW")
    assert "200 units reported is within the MUE of 800 (MAI 3" in u["steps"][-1]


def c_e1122(r: DraftResult) -> None:
    rel = {(f["relation"], f["at"], f["other"]) for f in facts(r, 1, "icd_relation")}
    assert ("use_additional", "E11.22", "N18.31") in rel
    assert ("code_first", "N18.31", "E11.22") in rel
    assert suggested(r).startswith("Sequence E11.22 first, then N18.31")
    assert all(f["source"] == ICD for f in facts(r, 1, "icd_relation"))


def c_excludes1(r: DraftResult) -> None:
    rel = {(f["relation"], f["at"], f["other"]) for f in facts(r, 1, "icd_relation")}
    assert ("excludes1", "E11.9", "E10.9") in rel and ("excludes1", "E10.9", "E11.9") in rel
    assert "are not reported together" in suggested(r)


def c_n183(r: DraftResult) -> None:
    assert one(r, 1, "status", codes=["N18.3"])["billable"] is False
    assert one(r, 1, "status", codes=["I12.9"])["billable"] is True
    assert "N18.3 is not billable" in suggested(r)


def c_search_icd(r: DraftResult) -> None:
    assert r.facts["parts"][0]["search_query"] == "type 2 diabetes with diabetic chronic kidney disease"
    hits = facts(r, 1, "search")
    assert hits[0]["codes"] == ["E11.22"] and hits[0]["source"] == ICD
    assert all(h["system"] == "ICD-10-CM" for h in hits)


def c_search_hcpcs(r: DraftResult) -> None:
    hits = facts(r, 1, "search")
    assert "J1885" in [h["codes"][0] for h in hits]
    assert all(h["system"] == "HCPCS" for h in hits)


def c_99213(r: DraftResult) -> None:
    d = one(r, 1, "descriptor")
    assert d["system"] == "CPT" and d["source"] == MUE
    assert "not reproduced" in d["text"]
    assert r.facts["cpt_descriptors"] is False
    assert "cannot quote CPT descriptors" in suggested(r)


def c_g2211(r: DraftResult) -> None:
    assert one(r, 1, "descriptor")["text"].startswith("HCPCS G2211: Visit complexity inherent")
    addon = one(r, 1, "aoc", addon="G2211")
    assert "99213" in addon["primaries"]


def c_m1711(r: DraftResult) -> None:
    assert one(r, 1, "descriptor")["text"] == "ICD-10-CM M17.11: Unilateral primary osteoarthritis, right knee"
    assert one(r, 1, "status")["billable"] is True


def c_other(r: DraftResult) -> None:
    assert r.facts["parts"][0]["codes"] == []
    assert suggested(r).startswith("[Consultant:")


def c_multi3(r: DraftResult) -> None:
    assert one(r, 1, "ptp", column_1="20610", column_2="99213")["indicator"] == 1
    assert units_fact(r, 2)["units"] == 8  # 80 mg ÷ 10 mg
    assert one(r, 3, "status")["billable"] is True
    assert facts(r, 3, "release_age") == []  # an ICD-10-CM question cites no quarterly HCPCS data
    assert [p["codes"] for p in r.facts["parts"]] == [["20610", "99213"], ["J3301"], ["M17.11"]]


def c_multi2(r: DraftResult) -> None:
    assert one(r, 1, "ptp", column_1="45385", column_2="45380")["indicator"] == 1
    mue = one(r, 2, "mue")
    assert (mue["value"], mue["mai"]) == (1, 2)


def c_quoted(r: DraftResult) -> None:
    # The quoted answer mentioned J1885, 77301 and 77306: none of them is a new question.
    assert [p["codes"] for p in r.facts["parts"]] == [["96372", "99214"]]
    assert one(r, 1, "ptp", column_1="96372", column_2="99214")["indicator"] == 1


def c_outlook(r: DraftResult) -> None:
    assert [p["codes"] for p in r.facts["parts"]] == [["J2405"]]
    assert units_fact(r)["units"] == 8


def c_needs_both(r: DraftResult) -> None:
    assert [m["field"] for m in r.facts["missing"]] == ["payer", "date_of_service"]
    assert "needs_info:payer+date_of_service" in r.rule_hits
    # The facts are still looked up for the consultant.
    assert one(r, 1, "ptp", column_1="64483", column_2="20610")["indicator"] == 1


def c_needs_dos(r: DraftResult) -> None:
    assert [m["field"] for m in r.facts["missing"]] == ["date_of_service"]
    assert "What is the date of service?" in r.text
    assert "payer" not in r.text.lower().split("date of service")[0]


def c_phi(r: DraftResult) -> None:
    assert "phi_suspected" in r.flags and {"phi_dob", "phi_mrn"} <= set(r.rule_hits)
    assert {"dob", "mrn", "name"} <= set(r.facts["phi"]["counts"])
    assert "contained patient identifiers (patient names, medical record numbers, dates of birth)" in " ".join(r.text.split())
    for leaked in ("Robert Miller", "02/14/1951", "00482913"):
        assert leaked not in r.text and leaked not in r.html
    assert units_fact(r)["units"] == 2  # 30 mg ÷ 15 mg


def c_phi2(r: DraftResult) -> None:
    assert {"phi_ssn", "phi_account_number"} <= set(r.rule_hits)
    assert "123-45-6789" not in r.text and "W123456789" not in r.text


CASES: list[tuple[str, str, list[str], str, Callable[[DraftResult], None]]] = [
    # mail, kind, question types, rule of part 1, checks
    ("bundling_20610_99214", "answer", ["bundling"], "two_procedures_billed_together", c_20610_99214),
    ("bundling_77301_77306", "answer", ["bundling"], "two_procedures_billed_together", c_77301_77306),
    ("bundling_77301_77338_noedit", "answer", ["bundling"], "two_procedures_billed_together", c_77301_77338),
    ("bundling_64483_64484_addon", "answer", ["bundling"], "two_procedures_billed_together", c_64483_64484),
    ("bundling_45385_45380", "answer", ["bundling"], "two_procedures_billed_together", c_45385_45380),
    ("bundling_43239_43235_html", "answer", ["bundling"], "two_procedures_billed_together", c_43239_43235),
    ("bundling_commercial_20610_99214", "answer", ["bundling"], "two_procedures_billed_together", c_commercial),
    ("modifier_25_or_59", "answer", ["modifier"], "asks_modifier_choice", c_mod_25_59),
    ("modifier_11042_97597", "answer", ["modifier"], "asks_modifier_choice", c_mod_11042_97597),
    ("modifier_xu_29880_29881", "answer", ["modifier"], "asks_modifier_choice", c_mod_xu),
    ("units_77301_two", "answer", ["units_mue"], "asks_units_or_mue", c_units_77301),
    ("units_64483_two", "answer", ["units_mue"], "asks_units_or_mue", c_units_64483),
    ("units_97110_four", "answer", ["units_mue"], "asks_units_or_mue", c_units_97110),
    ("units_11045_html", "answer", ["units_mue"], "asks_units_or_mue", c_units_11045),
    ("drug_ketorolac_j1885", "answer", ["drug_units"], "drug_dose_with_j_code", c_j1885),
    ("drug_bevacizumab_j9035_waste", "answer", ["drug_units"], "drug_dose_with_j_code", c_j9035),
    ("drug_dexamethasone_j1100", "answer", ["drug_units"], "drug_dose_with_j_code", c_j1100),
    ("drug_ondansetron_j2405", "answer", ["drug_units"], "drug_dose_with_j_code", c_j2405),
    ("drug_triamcinolone_j3301_html", "answer", ["drug_units"], "drug_dose_with_j_code", c_j3301),
    ("drug_promethazine_j2550", "answer", ["drug_units"], "drug_dose_with_j_code", c_j2550),
    ("drug_methylpred_j1030_terminated", "answer", ["drug_units"], "drug_dose_with_j_code", c_j1030),
    ("drug_botox_j0585_waste", "answer", ["drug_units"], "drug_dose_with_j_code", c_j0585),
    ("diagnosis_e1122_n1831", "answer", ["diagnosis"], "diagnosis_codes_or_sequencing", c_e1122),
    ("diagnosis_e119_e109_excludes", "answer", ["diagnosis"], "diagnosis_codes_or_sequencing", c_excludes1),
    ("diagnosis_n183_header_html", "answer", ["diagnosis"], "diagnosis_codes_or_sequencing", c_n183),
    ("search_icd_diabetes_ckd", "answer", ["code_search"], "asks_code_for_description", c_search_icd),
    ("search_hcpcs_ketorolac", "answer", ["code_search"], "asks_code_for_description", c_search_hcpcs),
    ("definition_99213", "answer", ["code_definition"], "asks_what_code_means", c_99213),
    ("definition_g2211", "answer", ["code_definition"], "asks_what_code_means", c_g2211),
    ("definition_m1711", "answer", ["code_definition"], "asks_what_code_means", c_m1711),
    ("other_general", "answer", ["other"], "no_rule_matched", c_other),
    ("multi_three_numbered", "answer", ["bundling", "drug_units", "code_definition"],
     "two_procedures_billed_together", c_multi3),
    ("multi_two_sentences", "answer", ["bundling", "units_mue"], "two_procedures_billed_together", c_multi2),
    ("multi_quoted_earlier_reply", "answer", ["bundling"], "two_procedures_billed_together", c_quoted),
    ("multi_outlook_quoted_html", "answer", ["drug_units"], "drug_dose_with_j_code", c_outlook),
    ("needs_info_no_payer_no_dos", "needs_info", ["bundling"], "two_procedures_billed_together", c_needs_both),
    ("needs_info_no_dos", "needs_info", ["units_mue"], "asks_units_or_mue", c_needs_dos),
    ("phi_name_dob_mrn", "answer", ["drug_units"], "drug_dose_with_j_code", c_phi),
    ("phi_ssn_member_id", "answer", ["modifier"], "asks_modifier_choice", c_phi2),
]


def test_every_mail_has_a_case() -> None:
    covered = {c[0] for c in CASES} | {"needs_info_followup_reply"}  # used in test_pipeline
    assert covered == {p.stem for p in MAILS.glob("*.eml")}
    assert len(CASES) >= 30


@pytest.mark.parametrize(("mail", "kind", "types", "rule", "check"), CASES, ids=[c[0] for c in CASES])
def test_golden(kb_factory: sessionmaker[Session], kb_settings: Settings, mail: str, kind: str,
                types: list[str], rule: str, check: Callable[[DraftResult], None]) -> None:
    result = draft_mail(kb_factory, kb_settings, mail)
    assert result.kind == kind
    assert result.template == ("needs_info" if kind == "needs_info" else "answer")
    assert result.question_types == types
    assert [p["template"] for p in result.facts["parts"]] == types
    assert result.rule_hits[0] == f"question_rule:{rule}"
    # Every fact that states something from the data names its release.
    for part in result.facts["parts"]:
        for fact in part["facts"]:
            if fact["kind"] in ("ptp", "mue", "aoc", "units", "status", "icd_relation", "modifier"):
                assert fact["source"], fact
    assert set(result.facts["releases"]) <= {HCPCS, MUE, AOC, PTP, ICD}
    check(result)
