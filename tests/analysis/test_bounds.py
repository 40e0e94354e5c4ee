"""Bad input gets a bounded answer: no codes, hundreds of codes, a huge pasted table, unknown and
malformed codes, contradictory units — never an exception, never a dropped question, and the
draft says what the analysis left out."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from consultant.analysis import QType, analyse
from consultant.analysis import pipeline as stage
from consultant.drafting.draft import make_draft
from consultant.settings import load_settings


def test_a_mail_with_no_codes_still_gets_a_part_with_a_prompt(labelled_factory: sessionmaker[Session]) -> None:
    with labelled_factory() as s:
        result = analyse(s, "Hi, quick general question: how long do we keep EOBs on file?", subject="records")
        draft = make_draft(s, load_settings(environ={}), question="how long do we keep EOBs on file?",
                           subject="records", requester_name=None)
    assert [p.question.qtype for p in result.parts] == [QType.OTHER]
    assert result.parts[0].prompts == ["answer_by_hand"] and result.codes == []
    assert "[Consultant: answer this question" in draft.text


def test_hundreds_of_codes_and_a_huge_table_are_capped_and_said(labelled_factory: sessionmaker[Session]) -> None:
    rows = "\n".join(f"  {99202 + i % 4}   1   $120.00   line {i}" for i in range(3000))
    codes = " ".join(f"{10000 + i}" for i in range(300))
    body = f"Medicare, DOS 07/15/2026.\nCPT   UNITS   CHARGE   NOTE\n{rows}\n{codes}\nCan all of these be billed together?"
    with labelled_factory() as s:
        t0 = time.monotonic()
        result = analyse(s, body, subject="big claim")
        seconds = time.monotonic() - t0
        draft = make_draft(s, load_settings(environ={}), question=body, subject="big claim", requester_name=None)
    assert result.truncated["characters"] == len(body) - len(stage._cap(body, stage.MAX_CHARS))
    assert len(result.codes) <= stage.MAX_CODES
    assert "left out; answer those parts by hand" in draft.text
    assert seconds < 60  # generous: a hang would be minutes; speed itself is measured in bench/


def test_unknown_malformed_and_contradictory_input(labelled_factory: sessionmaker[Session]) -> None:
    body = ("Provider wrote E11.99999 and procedure code 992144 on the slip, and 99214 x2 on one line "
            "but 99214 x1 on the next. DOS 13/45/2026. How many units of J188?")
    with labelled_factory() as s:
        result = analyse(s, body, subject="messy")
    unknown = {f["codes"][0] for f in result.findings if f["kind"] == "unknown_code"}
    assert {"E11.99999", "992144", "J188"} <= unknown
    assert result.context.date_of_service is None  # an impossible date is no date
    assert result.parts, "every question keeps a part"
    [em] = [c for c in result.codes if c.code == "99214"]
    assert em.units == 3  # units written on two lines add up; the MUE compares the day's total
