"""Golden tests: each realistic mail in mails/ against the real CMS/CDC data.

They check what the draft *decides* (question types, template, kind, the facts with their numbers
and sources, the pre-filled suggestion) rather than whole rendered texts, so wording can change
without rewriting them.
"""

from __future__ import annotations

import re
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


PTP32 = "NCCI PTP practitioner v32.2 2026-07-01 (in-force snapshot)"


def part(r: DraftResult, n: int = 1) -> dict[str, Any]:
    return r.facts["parts"][n - 1]


def pair(r: DraftResult, n: int, c1: str, c2: str | None = None) -> dict[str, Any]:
    found = [d["pair"] for d in part(r, n)["ptp"]
             if d["pair"]["column_1"] == c1 and (c2 is None or d["pair"]["column_2"] == c2)]
    assert len(found) == 1, (c1, c2, part(r, n)["ptp"])
    return found[0]


def only_pair(r: DraftResult, n: int = 1) -> dict[str, Any]:
    [d] = part(r, n)["ptp"]
    return d["pair"]


def mue(r: DraftResult, n: int = 1, code: str | None = None) -> dict[str, Any]:
    found = [d for d in part(r, n)["mue"] if code is None or d["code"] == code]
    assert len(found) == 1, part(r, n)["mue"]
    return found[0]


def units(r: DraftResult, n: int = 1) -> dict[str, Any]:
    [u] = part(r, n)["units"]
    return u


def addon(r: DraftResult, n: int, code: str) -> dict[str, Any]:
    [a] = [a for a in part(r, n)["addons"] if a["code"] == code]
    return a


def icd(r: DraftResult, n: int, code: str) -> dict[str, Any]:
    [f] = [f for f in part(r, n)["icd"] if f["code"] == code]
    return f


def suggested(r: DraftResult, n: int = 1) -> str:
    """The suggested answer of question ``n`` as the draft writes it."""
    blocks = re.findall(r"=== SUGGESTED ANSWER.*?===\n(.*?)=== END OF SUGGESTED ANSWER", r.text, re.S)
    return blocks[n - 1]


# --- checks per mail --------------------------------------------------------------------------
def c_20610_99214(r: DraftResult) -> None:
    edit = pair(r, 1, "20610", "99214")
    assert edit["modifier_indicator"] == 1 and edit["source"] in (PTP, PTP32)
    assert edit["rationale"] == "CPT Manual or CMS manual coding instruction"
    assert "modifier 25 on 99214" in suggested(r)


def c_77301_77306(r: DraftResult) -> None:
    assert pair(r, 1, "77301", "77306")["modifier_indicator"] == 0
    s = suggested(r)
    assert s.startswith("Report 77301; do not report 77306 with it.") and "[Consultant:" not in s
    assert "no modifier bypasses the edit" in r.text


def c_77301_77338(r: DraftResult) -> None:
    edit = only_pair(r)
    assert edit["modifier_indicator"] is None and edit["source"] in (PTP, PTP32)
    assert "NCCI has no procedure-to-procedure edit between 77301 and 77338" in r.text
    assert "can both be reported as far as NCCI is concerned" in suggested(r)


def c_64483_64484(r: DraftResult) -> None:
    a = addon(r, 1, "64484")
    assert a["primaries"] == ["64483"] and a["present"] == ["64483"] and a["source"] == AOC
    assert only_pair(r)["modifier_indicator"] is None  # no PTP edit between the two (SOURCES.md)
    assert "64484 is an add-on code and 64483 is an eligible primary" in r.text
    assert "Reported alone, without an eligible primary for the same patient and day, it is expected to deny" in suggested(r)


def c_45385_45380(r: DraftResult) -> None:
    edit = pair(r, 1, "45385", "45380")
    assert edit["modifier_indicator"] == 1 and edit["rationale"] == "More extensive procedure"
    assert "XE/XS/XP/XU" in suggested(r) and "modifier 25" not in suggested(r)


def c_43239_43235(r: DraftResult) -> None:
    edit = pair(r, 1, "43239", "43235")
    assert edit["modifier_indicator"] == 0 and edit["rationale"] == "CPT Separate procedure definition"
    assert r.facts["context"]["payer"] == "Medicaid"


def c_commercial(r: DraftResult) -> None:
    assert r.facts["context"]["payer"] == "commercial"
    assert pair(r, 1, "20610")["modifier_indicator"] == 1


def c_mod_25_59(r: DraftResult) -> None:
    assert pair(r, 1, "20610", "99214")["modifier_indicator"] == 1
    assert "not 59 or an X modifier" in r.text


def c_mod_11042_97597(r: DraftResult) -> None:
    assert pair(r, 1, "11042", "97597")["modifier_indicator"] == 1
    assert "append a PTP-associated modifier to 97597" in r.text


def c_mod_xu(r: DraftResult) -> None:
    edit = pair(r, 1, "29880", "29881")
    assert edit["modifier_indicator"] == 1 and edit["rationale"] == "HCPCS/CPT procedure code definition"
    assert r.facts["context"]["payer"] == "Medicare Advantage"


def c_units_77301(r: DraftResult) -> None:
    m = mue(r)
    assert (m["mue"]["value"], m["mue"]["mai"], m["units"], m["mue"]["source"]) == (1, 3, 2, MUE)
    assert "extra units can be paid only on appeal" in suggested(r)


def c_units_64483(r: DraftResult) -> None:
    m = mue(r)
    assert (m["mue"]["value"], m["mue"]["mai"], m["units"]) == (1, 2, 2)
    assert "not payable, not even on appeal" in suggested(r)


def c_units_97110(r: DraftResult) -> None:
    m = mue(r)
    assert (m["mue"]["value"], m["mue"]["mai"], m["units"]) == (6, 3, 4)
    assert "4 units of 97110 is within the MUE of 6" in suggested(r)


def c_units_11045(r: DraftResult) -> None:
    assert mue(r, 1, "11045")["mue"]["value"] == 12
    assert mue(r, 1, "11042")["mue"]["value"] == 1
    assert addon(r, 1, "11045")["present"] == ["11042"]


def c_j1885(r: DraftResult) -> None:
    u = units(r)
    assert u["calc"]["units"] == 4 and u["calc"]["modifier"] == "JZ" and u["calc"]["wasted_units"] == 0
    assert "60 mg ÷ 15 mg per unit = 4: 4 units of J1885." in r.text
    assert "4 units in all is within the MUE of 8" in suggested(r)
    assert u["source"] == HCPCS and u["descriptor"] == "Injection, ketorolac tromethamine, per 15 mg"


def c_j9035(r: DraftResult) -> None:
    c = units(r)["calc"]
    assert (c["units"], c["wasted_units"], c["modifier"]) == (38, 2, "JW")
    assert "375 mg ÷ 10 mg per unit = 37.5, rounded up to 38" in r.text
    assert "J9035-JW × 2 units" in suggested(r)
    assert "within the MUE of 230" in suggested(r)


def c_j1100(r: DraftResult) -> None:
    c = units(r)["calc"]
    assert (c["units"], c["modifier"]) == (10, "JZ")
    assert "within the MUE of 120" in suggested(r)


def c_j2405(r: DraftResult) -> None:
    c = units(r)["calc"]
    assert c["units"] == 4 and c["modifier"] is None  # waste not stated: left to the consultant
    assert "[Consultant:" in suggested(r) and "JW" in suggested(r)


def c_j3301(r: DraftResult) -> None:
    assert units(r)["calc"]["units"] == 4
    assert mue(r, 1, "J3301")["mue"]["value"] == 16


def c_j2550(r: DraftResult) -> None:
    c = units(r)["calc"]
    assert c["units"] == 1 and c["billing"]["up_to"] and c["billing"]["amount"] == 50
    assert "rounded up to 1" in r.text


def c_j1030(r: DraftResult) -> None:
    assert units(r)["terminated"] == "2024-03-31"
    assert "J1030 was terminated on 2024-03-31" in suggested(r)


def c_j0585(r: DraftResult) -> None:
    c = units(r)["calc"]
    assert (c["units"], c["wasted_units"], c["modifier"]) == (155, 45, "JW")
    assert "200 units in all is within the MUE of 800" in suggested(r)


def c_e1122(r: DraftResult) -> None:
    assert any("E11.22" in n for n in icd(r, 1, "N18.31")["code_first"])
    assert icd(r, 1, "E11.22")["billable"] and icd(r, 1, "N18.31")["source"] == ICD


def c_excludes1(r: DraftResult) -> None:
    [x] = part(r)["excludes1"]
    assert {x["a"], x["b"]} == {"E11.9", "E10.9"}
    assert "are not coded together" in r.text


def c_n183(r: DraftResult) -> None:
    n183 = icd(r, 1, "N18.3")
    assert n183["header"] and [c for c, _ in n183["children"]] == ["N18.30", "N18.31", "N18.32"]
    assert icd(r, 1, "I12.9")["billable"] is True
    assert "N18.3 cannot be reported" in suggested(r)


def c_search_icd(r: DraftResult) -> None:
    assert part(r)["question"]["search_query"] == "type 2 diabetes with diabetic chronic kidney disease"
    hits = part(r)["candidates"]
    assert hits[0]["code"] == "E11.22" and hits[0]["source"] == ICD
    assert all(h["system"] == "ICD-10-CM" for h in hits)


def c_search_hcpcs(r: DraftResult) -> None:
    hits = part(r)["candidates"]
    assert "J1885" in [h["code"] for h in hits]
    assert all(h["system"] == "HCPCS" for h in hits)


def c_99213(r: DraftResult) -> None:
    [d] = part(r)["definitions"]
    assert d["code"]["system"] == "CPT" and d["code"]["description"] is None
    assert "not reproduced" in r.text and r.facts["cpt_descriptors"] is False
    assert "without quoting its descriptor" in suggested(r)


def c_g2211(r: DraftResult) -> None:
    [d] = part(r)["definitions"]
    assert d["code"]["description"].startswith("Visit complexity inherent")
    assert "99213" in addon(r, 2, "G2211")["primaries"]


def c_m1711(r: DraftResult) -> None:
    f = icd(r, 1, "M17.11")
    assert f["description"] == "Unilateral primary osteoarthritis, right knee" and f["billable"] is True


def c_other(r: DraftResult) -> None:
    assert part(r)["question"]["codes"] == []
    assert suggested(r).startswith("[Consultant:")


def c_multi3(r: DraftResult) -> None:
    assert pair(r, 1, "20610", "99213")["modifier_indicator"] == 1
    assert units(r, 2)["calc"]["units"] == 8  # 80 mg ÷ 10 mg
    assert icd(r, 3, "M17.11")["billable"] is True
    assert [p["question"]["codes"] for p in r.facts["parts"]] == [["20610", "99213"], ["J3301"], ["M17.11"]]


def c_multi2(r: DraftResult) -> None:
    assert pair(r, 1, "45385", "45380")["modifier_indicator"] == 1
    m = mue(r, 2, "45385")
    assert (m["mue"]["value"], m["mue"]["mai"]) == (1, 2)


def c_quoted(r: DraftResult) -> None:
    # The quoted answer mentioned J1885, 77301 and 77306: none of them is a new question.
    assert [p["question"]["codes"] for p in r.facts["parts"]] == [["96372", "99214"]]
    assert pair(r, 1, "96372", "99214")["modifier_indicator"] == 1


def c_outlook(r: DraftResult) -> None:
    assert [p["question"]["codes"] for p in r.facts["parts"]] == [["J2405"]]
    assert units(r)["calc"]["units"] == 8


def c_needs_both(r: DraftResult) -> None:
    assert r.facts["missing"] == ["payer", "date_of_service"]
    assert "needs_info:payer+date_of_service" in r.rule_hits
    # The facts are still looked up for the consultant.
    assert pair(r, 1, "64483", "20610")["modifier_indicator"] == 1


def c_needs_dos(r: DraftResult) -> None:
    assert r.facts["missing"] == ["date_of_service"]
    assert "What is the date of service?" in r.text
    assert "payer" not in r.text.lower().split("date of service")[0]


def c_phi(r: DraftResult) -> None:
    assert "phi_suspected" in r.flags and {"phi_dob", "phi_mrn"} <= set(r.rule_hits)
    assert {"dob", "mrn", "name"} <= set(r.facts["phi"]["counts"])
    assert "contained patient identifiers (patient names, medical record numbers, dates of birth)" in " ".join(r.text.split())
    for leaked in ("Robert Miller", "02/14/1951", "00482913"):
        assert leaked not in r.text and leaked not in r.html
    assert units(r)["calc"]["units"] == 2  # 30 mg ÷ 15 mg


def c_phi2(r: DraftResult) -> None:
    assert {"phi_ssn", "phi_account_number"} <= set(r.rule_hits)
    assert "123-45-6789" not in r.text and "W123456789" not in r.text


CASES: list[tuple[str, str, list[str], str, Callable[[DraftResult], None]]] = [
    # mail, kind, question types, rule of part 1, checks
    ("bundling_20610_99214", "answer", ["bundling"], "two_procedures_billed_together", c_20610_99214),
    ("bundling_77301_77306", "answer", ["bundling"], "two_procedures_billed_together", c_77301_77306),
    ("bundling_77301_77338_noedit", "answer", ["bundling"], "two_procedures_billed_together", c_77301_77338),
    ("bundling_64483_64484_addon", "answer", ["addon"], "addon_code_alone_or_denied", c_64483_64484),
    ("bundling_45385_45380", "answer", ["bundling"], "two_procedures_billed_together", c_45385_45380),
    ("bundling_43239_43235_html", "answer", ["bundling"], "two_procedures_billed_together", c_43239_43235),
    ("bundling_commercial_20610_99214", "answer", ["bundling"], "two_procedures_billed_together", c_commercial),
    ("modifier_25_or_59", "answer", ["modifier"], "asks_modifier_choice", c_mod_25_59),
    ("modifier_11042_97597", "answer", ["modifier"], "asks_modifier_choice", c_mod_11042_97597),
    ("modifier_xu_29880_29881", "answer", ["modifier"], "asks_modifier_choice", c_mod_xu),
    ("units_77301_two", "answer", ["units_mue"], "asks_units_or_mue", c_units_77301),
    ("units_64483_two", "answer", ["units_mue"], "asks_units_or_mue", c_units_64483),
    ("units_97110_four", "answer", ["units_mue"], "units_on_a_code_denied", c_units_97110),
    ("units_11045_html", "answer", ["units_mue"], "asks_units_or_mue", c_units_11045),
    ("drug_ketorolac_j1885", "answer", ["drug_units"], "drug_dose_with_drug_code", c_j1885),
    ("drug_bevacizumab_j9035_waste", "answer", ["drug_units"], "drug_dose_with_drug_code", c_j9035),
    ("drug_dexamethasone_j1100", "answer", ["drug_units"], "drug_dose_with_drug_code", c_j1100),
    ("drug_ondansetron_j2405", "answer", ["drug_units"], "drug_dose_with_drug_code", c_j2405),
    ("drug_triamcinolone_j3301_html", "answer", ["drug_units"], "drug_dose_with_drug_code", c_j3301),
    ("drug_promethazine_j2550", "answer", ["drug_units"], "drug_dose_with_drug_code", c_j2550),
    ("drug_methylpred_j1030_terminated", "answer", ["drug_units"], "drug_dose_with_drug_code", c_j1030),
    ("drug_botox_j0585_waste", "answer", ["drug_units"], "drug_dose_with_drug_code", c_j0585),
    ("diagnosis_e1122_n1831", "answer", ["diagnosis"], "diagnosis_codes_or_sequencing", c_e1122),
    ("diagnosis_e119_e109_excludes", "answer", ["diagnosis"], "diagnosis_codes_or_sequencing", c_excludes1),
    ("diagnosis_n183_header_html", "answer", ["diagnosis"], "diagnosis_codes_or_sequencing", c_n183),
    ("search_icd_diabetes_ckd", "answer", ["code_search"], "asks_code_for_description", c_search_icd),
    ("search_hcpcs_ketorolac", "answer", ["code_search"], "asks_code_for_description", c_search_hcpcs),
    ("definition_99213", "answer", ["code_definition"], "asks_what_code_means", c_99213),
    ("definition_g2211", "answer", ["code_definition", "addon"], "asks_if_code_valid", c_g2211),
    ("definition_m1711", "answer", ["code_definition"], "asks_if_code_valid", c_m1711),
    ("other_general", "answer", ["other"], "no_rule_matched", c_other),
    ("multi_three_numbered", "answer", ["bundling", "drug_units", "code_definition"],
     "two_procedures_billed_together", c_multi3),
    ("multi_two_sentences", "answer", ["bundling", "units_mue"], "two_procedures_billed_together", c_multi2),
    ("multi_quoted_earlier_reply", "answer", ["bundling"], "two_procedures_billed_together", c_quoted),
    ("multi_outlook_quoted_html", "answer", ["drug_units"], "drug_dose_with_drug_code", c_outlook),
    ("needs_info_no_payer_no_dos", "needs_info", ["bundling"], "two_procedures_billed_together", c_needs_both),
    ("needs_info_no_dos", "needs_info", ["units_mue"], "asks_units_or_mue", c_needs_dos),
    ("phi_name_dob_mrn", "answer", ["drug_units"], "drug_dose_with_drug_code", c_phi),
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
    assert [p["question"]["qtype"] for p in result.facts["parts"]] == types
    assert result.rule_hits[0] == f"question_rule:{rule}"
    assert result.facts["analysis_count"] == 1
    # Every fact that states something from the data names its release.
    for p in result.facts["parts"]:
        for d in p["ptp"]:
            assert d["pair"]["source"], d
        for d in p["mue"]:
            assert d["mue"] is None or d["mue"]["source"], d
        for a in p["addons"]:
            assert a["source"], a
    assert set(result.facts["releases"]) <= {HCPCS, MUE, AOC, PTP, PTP32, ICD}
    check(result)
