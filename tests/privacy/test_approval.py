"""Approving a case whose mail had identifiers: one explicit confirmation, and a final check of
the composed message that refuses an identifier a consultant typed back in."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from consultant.intake.store import Location, store_raw
from consultant.models import AuditEvent, Case, Draft, InboundMail, Outbox
from consultant.processing import process_mail
from consultant.review.actions import ActionError, approve
from tests.conftest import question_mail

BODY = ("Patient: John Q. Smith, DOB 04/17/1961, SSN 123-45-6789, MBI 1EG4-TE5-MK73.\n"
        "Medicare, DOS 2026-05-01. Can 77301 and 77338 be billed the same day?")
VALUES = ("John", "Smith", "04/17/1961", "123-45-6789", "1EG4-TE5-MK73")


def phi_case(factory, settings) -> int:  # type: ignore[no-untyped-def]
    raw = question_mail(subject="Modifier question for patient John Smith", body=BODY)
    stored = store_raw(factory, raw, Location("cli"))
    process_mail(factory, settings, stored.mail_id)
    with factory() as s:
        return s.execute(select(Case.id)).scalar_one()


def test_the_case_holds_placeholders_and_what_was_removed(factory, settings):
    case_id = phi_case(factory, settings)
    with factory() as s:
        case = s.get(Case, case_id)
        draft = s.execute(select(Draft).where(Draft.case_id == case_id)).scalar_one()
        mail = s.execute(select(InboundMail)).scalar_one()
        stored = [case.subject, str(case.facts), str(case.codes), draft.text, draft.html or "",
                  mail.subject or "", case.requester.name or ""]
        assert case.subject == "Modifier question for patient [NAME]"
        assert case.redaction["counts"] == {"name": 2, "mbi": 1, "ssn": 1, "dob": 1}
        assert "phi_suspected" in case.flags
        assert any(e.action == "redacted" for e in s.execute(select(AuditEvent)).scalars())
    for value in VALUES:
        assert not any(value in text for text in stored), value
    # Codes and the date of service survive.
    assert "77301" in draft.text and "77338" in draft.text


def test_approval_needs_the_explicit_confirmation(factory, settings):
    case_id = phi_case(factory, settings)
    with pytest.raises(ActionError, match="confirm_phi"):
        approve(factory, settings, case_id, text="They can be billed together.\n", by="c@cc.test")
    with factory() as s:
        assert s.execute(select(Outbox)).first() is None
    effects = approve(factory, settings, case_id, text="They can be billed together.\n",
                      by="c@cc.test", confirm_phi=True)
    assert effects.outbox_ids


def test_an_identifier_typed_back_in_is_refused_with_its_place(factory, settings):
    case_id = phi_case(factory, settings)
    text = "Hello,\n\nFor Mr. Smith (DOB 04/17/1961) the two codes can be billed together.\n"
    with pytest.raises(ActionError) as refused:
        approve(factory, settings, case_id, text=text, by="c@cc.test", confirm_phi=True)
    message = str(refused.value)
    assert "the text, line 3" in message and "dob (rule dob)" in message
    assert "name (rule name_after_title)" in message
    # The refusal shows the place, never the value (it is displayed and returned by the API).
    assert "Smith" not in message and "04/17/1961" not in message
    with factory() as s:
        assert s.execute(select(Outbox)).first() is None
        # The consultant's edit is kept, so they can fix it.
        assert s.execute(select(Draft).order_by(Draft.version.desc())).scalars().first().text == text


def test_the_sent_warning_names_the_kinds_and_the_message_holds_none(factory, settings):
    case_id = phi_case(factory, settings)
    with factory() as s:
        draft = s.execute(select(Draft).where(Draft.case_id == case_id)).scalar_one()
        machine = draft.text
    assert "contained patient identifiers (patient names" in " ".join(machine.split())
    # The consultant answers the draft's "[Consultant: …]" prompts and keeps the rest.
    answered = re.sub(r"\[Consultant:[^\]]*\]", "Yes, with the edits named above.", machine)
    effects = approve(factory, settings, case_id, text=answered, by="c@cc.test", confirm_phi=True)
    with factory() as s:
        out = s.get(Outbox, effects.outbox_ids[0])
        msg = BytesParser(policy=policy.default).parsebytes(out.raw)
        whole = out.raw.decode("utf-8", "replace") + str(msg["Subject"])
    for value in VALUES:
        assert value not in whole, value
    assert "Social Security numbers" in " ".join(msg.get_body(("plain",)).get_content().split())


def test_a_value_from_the_mail_typed_back_without_any_cue_is_refused(factory, settings):
    case_id = phi_case(factory, settings)
    for text, kind in (("Smith can bill both codes.\n", "name"),
                       ("SMITH can bill both codes.\n", "name"),
                       ("Reference 123.45.6789 on the claim.\n", "ssn")):
        with pytest.raises(ActionError) as refused:
            approve(factory, settings, case_id, text=text, by="c@cc.test", confirm_phi=True)
        assert f"{kind} (rule value_from_mail)" in str(refused.value), text
    # Words that only look like the name, and the date of service, do not stop an answer.
    approve(factory, settings, case_id, text="They will be paid; bill both on 2026-05-01.\n",
            by="c@cc.test", confirm_phi=True)
