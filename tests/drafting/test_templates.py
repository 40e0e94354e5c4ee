"""Every reply template renders in both parts; the HTML is well-formed and escapes requester text."""

from __future__ import annotations

from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from consultant.analysis.model import (
    Addon,
    Analysis,
    Candidate,
    Code,
    Context,
    DefinitionDecision,
    Excludes1,
    IcdFacts,
    Mue,
    MueDecision,
    Part,
    PtpDecision,
    PtpPair,
    QType,
    Question,
    System,
    UnitsDecision,
)
from consultant.codes.units import BillingUnit, compute
from consultant.drafting.templating import BUNDLED, environment, render_pair, render_text

QUESTION_TYPES = list(QType)

HOSTILE = '<script>alert("x")</script> & "quotes" <b>bold</b>'
VOID = {"br", "hr", "meta", "img", "input", "link"}


class StrictTreeChecker(HTMLParser):
    """Checks that every opened element is closed in order and records the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_html(html: str) -> StrictTreeChecker:
    checker = StrictTreeChecker()
    checker.feed(html)
    checker.close()
    assert not checker.errors, checker.errors
    assert not checker.stack, f"unclosed: {checker.stack}"
    assert "script" not in checker.tags, "requester text became markup"
    return checker


def typed_part(qtype: QType, number: int = 1) -> Part:
    """A part of each type, with hostile text wherever requester or descriptor text can appear."""
    q = Question(number=number, text=HOSTILE, codes=["20610", "99214", "J1885", "E11.2"], qtype=qtype,
                 rule="r", search_query=HOSTILE)
    mue = Mue("J1885", 8, 3, "Prescribing Information " + HOSTILE, "NCCI MUE practitioner 2026-04-01")
    bu = BillingUnit(15, "mg", text="per 15 mg")
    calc = compute("J1885", bu, 60, "mg", wasted=15, wasted_unit="mg")
    pair = PtpPair("20610", "99214", "NCCI PTP practitioner v32.2 2026-07-01 (in-force snapshot)", "20610", "99214", 1,
                   "CPT Manual " + HOSTILE, snapshot=True, effective=date(2026, 7, 1), through=date(2026, 9, 30))
    icd = IcdFacts("E11.2", HOSTILE, False, False, True, children=[("E11.21", HOSTILE), ("E11.22", "x")],
                   children_total=2, source="ICD-10-CM FY2026")
    part = Part(question=q, prompts=["answer_by_hand"])
    part.units = [UnitsDecision(calc, "J1885", HOSTILE, "HCPCS 2026-01", mue=mue)]
    part.mue = [MueDecision("J1885", 5, mue, True)]
    part.ptp = [PtpDecision(pair, "99214", "25")]
    part.addons = [Addon("64484", [1], ["64483"], [], "NCCI AOC 2026 Q2")]
    part.icd = [icd]
    part.excludes1 = [Excludes1("E10.22", "E11.22", "E10", HOSTILE, [("E11.22", HOSTILE)], "ICD-10-CM FY2026")]
    part.candidates = [Candidate("ICD-10-CM", "H40.1122", HOSTILE, "ICD-10-CM FY2026", True)]
    part.definitions = [DefinitionDecision(Code(System.HCPCS, "J1885", HOSTILE, "HCPCS 2026-01"))]
    return part


def view(part: Part) -> dict[str, Any]:
    return {"part": part, "q": part.question, "quote": HOSTILE, "template": str(part.question.qtype),
            "notes": [{"subject": "20610+99214", "text": HOSTILE}],
            "start_marker": "=== SUGGESTED ANSWER (consultant: edit before approving) ===",
            "end_marker": "=== END OF SUGGESTED ANSWER ==="}


ANALYSIS = Analysis(Context(date(2026, 7, 14)), [], [typed_part(t, i) for i, t in enumerate(QType, 1)], [], [],
                    truncated={"codes": 3})
CONTEXTS: dict[str, dict[str, Any]] = {
    "answer": {"requester_name": HOSTILE, "subject": HOSTILE, "phi": True, "phi_kinds": ["an SSN"], "service_name": "CC",
               "parts": [view(p) for p in ANALYSIS.parts], "analysis": ANALYSIS, "missing": []},
    "needs_info": {"requester_name": "Ann", "subject": HOSTILE, "phi": True, "service_name": "CC",
                   "parts": [], "analysis": ANALYSIS, "missing": ["payer", "date_of_service"]},
    "over_quota": {"subject": HOSTILE, "plan": "guest", "used": 1, "allowed": 1, "registered_extra": 5,
                   "org": None, "member_cap": None, "renews_on": None,
                   "upgrade_address": "sales@cc.test", "upgrade_url": "https://cc.test/plans",
                   "service_address": "consult@cc.test", "service_name": "CC"},
    "acknowledgement": {"requester_name": HOSTILE, "subject": HOSTILE, "tag": "[CC-7]",
                        "turnaround_hours": 4, "service_name": "CC"},
    "registration": {"requester_name": HOSTILE, "email": "a@b.test", "plan": "registered",
                     "answers_allowed": 6, "answers_remaining": 5, "held_cases": 1,
                     "service_address": "consult@cc.test", "service_name": "CC"},
    "phi_warning": {},
}


def test_every_bundled_pair_is_covered() -> None:
    names = {p.name.split(".")[0] for p in (BUNDLED / "replies").glob("*.html.j2")}
    names -= {"final"}
    assert names == set(CONTEXTS)
    for name in names:
        assert (BUNDLED / "replies" / f"{name}.txt.j2").exists(), name
    # Every question type has its own (plain-text) template, which an operator can override.
    for qtype in QUESTION_TYPES:
        assert (BUNDLED / "replies" / f"{qtype}.txt.j2").exists(), qtype


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_renders_both_parts(name: str) -> None:
    text, html = render_pair(name, CONTEXTS[name])
    assert text.strip()
    assert "&lt;script&gt;" not in text and "&amp;" not in text  # plain text is not escaped
    tree = check_html(html)
    if name not in ("phi_warning", "over_quota", "registration"):
        # The hostile text survives as visible text, never as markup.
        assert HOSTILE in "".join(tree.text)


def test_answer_lists_every_question_with_marked_suggestions() -> None:
    text, html = render_pair("answer", CONTEXTS["answer"])
    assert text.count("=== SUGGESTED ANSWER") == len(QUESTION_TYPES)
    assert f"Question {len(QUESTION_TYPES)} of {len(QUESTION_TYPES)}" in text
    assert "60 mg ÷ 15 mg per unit = 4: 4 units of J1885." in text
    assert "J1885-JW × 1 unit" in text
    assert "[NCCI MUE practitioner 2026-04-01]" in text
    assert "append modifier 25 to the E/M, 99214" in text
    assert "Its 2 billable codes: E11.21" in text
    assert "20610 / 99214: " + HOSTILE in text
    assert "a@b.test" not in text  # notes reach answers without their author's address
    assert "contained patient identifiers (an SSN)" in text
    assert "3 codes left out" in text
    assert "{{" not in text and "{%" not in text
    assert text.count("[Consultant: answer this question") == len(QUESTION_TYPES)


def test_html_starts_like_a_mail_client_expects() -> None:
    for name in ("answer", "needs_info", "acknowledgement", "registration", "over_quota"):
        _, html = render_pair(name, CONTEXTS[name])
        assert html.lstrip().lower().startswith("<!doctype html>"), name


def test_footer_variants() -> None:
    base = {"consultant_name": "Ann Coder", "consultant_credential": "CPC", "service_name": "CC",
            "balance": {"charged": True, "plan": "guest", "org": None, "remaining": 0, "allowed": 1,
                        "renews_on": None, "member_cap": None, "member_used": None},
            "as_of": "2026-05-04",
            "releases": ["HCPCS 2026-01", "NCCI MUE practitioner 2026-04-01"], "cpt_notice": False,
            "tag": "[CC-3]"}
    footer = render_text("footer", base)
    assert "Answered by Ann Coder, CPC, CC" in footer
    assert "code data used: HCPCS 2026-01, NCCI MUE practitioner 2026-04-01" in footer
    assert "American Medical Association" not in footer
    assert "This answer used 1 of 1 answers on your guest plan; 0 remain." in footer
    monthly = {**base["balance"], "plan": "pro", "org": "Lakeside Clinic", "remaining": 4,
               "allowed": 6, "renews_on": "1 January 2027", "member_cap": 3, "member_used": 1}
    assert ("This answer used 1 of 6 answers on the Lakeside Clinic pro plan; 4 remain for you "
            "this month (a member may use 3); the plan renews on 1 January 2027.") in \
        render_text("footer", {**base, "balance": monthly})
    with_cpt = render_text("footer", {**base, "cpt_notice": True,
                                      "balance": {**base["balance"], "charged": False, "remaining": 1}})
    assert "copyright American Medical Association" in with_cpt
    assert "This message did not use your quota; 1 answers remain on your guest plan." in with_cpt


def test_operator_directory_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "replies").mkdir()
    (tmp_path / "replies" / "bundling.txt.j2").write_text("OPERATOR {{ view.q.number }}\n")
    environment.cache_clear()
    try:
        text, html = render_pair("answer", CONTEXTS["answer"], str(tmp_path))
    finally:
        environment.cache_clear()
    assert "OPERATOR 1" in text
    assert "What the code data says" in text  # other types still use the bundled templates
    check_html(html)
