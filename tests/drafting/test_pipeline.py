"""Drafting through the real pipeline: stored mail → case → draft → approval → outbox."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultant.drafting import notes
from consultant.intake.store import Location, store_raw
from consultant.mail.parse import parse_mail
from consultant.models import AuditEvent, Case, Draft, InboundMail, Outbox, QuotaEntry
from consultant.processing import process_mail
from consultant.quota import ledger
from consultant.review import actions
from consultant.settings import Settings
from tests.drafting.conftest import load_mail

PTP = "NCCI PTP practitioner v30.2 2024-07-01"


def ingest(factory: sessionmaker[Session], settings: Settings, raw: bytes) -> InboundMail:
    stored = store_raw(factory, raw, Location("cli"))
    process_mail(factory, settings, stored.mail_id)
    with factory() as session:
        mail = session.get(InboundMail, stored.mail_id)
        assert mail is not None
        return mail


def case_of(factory: sessionmaker[Session], case_id: int) -> Case:
    with factory() as session:
        case = session.get(Case, case_id)
        assert case is not None
        _ = case.drafts, case.requester
        return case


def remaining(factory: sessionmaker[Session], settings: Settings, case: Case) -> int:
    with factory() as session:
        requester = session.get(type(case.requester), case.requester_id)
        return ledger.status(session, settings.quota, requester).answers_remaining


def sent_text(factory: sessionmaker[Session], outbox_id: int) -> str:
    with factory() as session:
        out = session.get(Outbox, outbox_id)
        assert out is not None
        return parse_mail(out.raw).text


def reply_to(raw: bytes, message_id: str) -> bytes:
    """The stored follow-up mail, re-pointed at the message we actually sent."""
    raw = re.sub(rb"(?m)^In-Reply-To: .*$", b"In-Reply-To: " + message_id.encode(), raw)
    return re.sub(rb"(?m)^References: .*$", b"References: " + message_id.encode(), raw)


def test_needs_info_is_free_and_the_reply_redrafts_an_answer(kb_factory, kb_settings):
    first = ingest(kb_factory, kb_settings, load_mail("needs_info_no_payer_no_dos"))
    case = case_of(kb_factory, first.case_id)
    assert case.status == "needs_info"
    assert case.drafts[-1].kind == "needs_info" and case.drafts[-1].template == "needs_info"
    assert "needs_info:payer+date_of_service" in case.rule_hits
    before = remaining(kb_factory, kb_settings, case)

    effects = actions.approve(kb_factory, kb_settings, case.id, text=None, by="cli")
    out_id = effects.outbox_ids[0]
    with kb_factory() as session:
        out = session.get(Outbox, out_id)
        assert out.kind == "needs_info" and out.charges_quota is False
        asked_id = out.message_id
        assert session.scalar(select(QuotaEntry).where(QuotaEntry.case_id == case.id)) is None
    assert remaining(kb_factory, kb_settings, case) == before
    body = sent_text(kb_factory, out_id)
    assert "Who is the payer" in body and "What is the date of service" in body
    assert "This message did not use your quota" in body

    follow = ingest(kb_factory, kb_settings, reply_to(load_mail("needs_info_followup_reply"), asked_id))
    assert follow.case_id == case.id and follow.disposition == "followup"
    case = case_of(kb_factory, case.id)
    assert case.status == "awaiting_review"
    latest = case.drafts[-1]
    assert latest.kind == "answer" and latest.author == "machine" and latest.version == 2
    assert case.facts["context"]["payer"] == "Medicare"
    assert case.facts["context"]["date_of_service"] == "2026-04-27"
    [edit] = [d["pair"] for d in case.facts["parts"][0]["ptp"]]
    assert (edit["column_1"], edit["column_2"], edit["modifier_indicator"]) == ("64483", "20610", 1)

    with __import__("pytest").raises(actions.ActionError, match="prompt"):
        actions.approve(kb_factory, kb_settings, case.id, text=None, by="cli")  # prompt unfilled
    filled = re.sub(r"\[Consultant:[^\]]*\]", "The documentation supports a distinct E/M.",
                    latest.text)
    effects = actions.approve(kb_factory, kb_settings, case.id, text=filled, by="cli")
    assert remaining(kb_factory, kb_settings, case) == before - 1
    body = sent_text(kb_factory, effects.outbox_ids[0])
    assert "=== SUGGESTED ANSWER" not in body and "=== END OF SUGGESTED ANSWER" not in body
    assert "Report both only when 20610 was a separate, distinct service" in body
    assert PTP in body.split("\n--\n")[-1]  # the footer names the release used


def test_phi_is_flagged_on_the_case(kb_factory, kb_settings):
    mail = ingest(kb_factory, kb_settings, load_mail("phi_name_dob_mrn"))
    case = case_of(kb_factory, mail.case_id)
    assert "phi_suspected" in case.flags
    assert {"phi_suspected", "phi_dob", "phi_mrn"} <= set(case.rule_hits)
    assert "Robert Miller" not in case.drafts[-1].text


def test_a_customer_facing_note_reappears_in_later_drafts_without_its_author(kb_factory, kb_settings):
    kb_settings.quota.guest = 10  # several questions from the same practice
    first = ingest(kb_factory, kb_settings, load_mail("bundling_20610_99214"))
    note_id = actions.add_note(kb_factory, first.case_id, "99214 / 20610",
                               "Document the separate E/M in its own note section.", by="ann@cc.test",
                               customer_facing=True)
    actions.add_note(kb_factory, first.case_id, "20610+99214", "Internal: payer audits this pair.",
                     by="ann@cc.test")
    with kb_factory() as session, session.begin():
        notes.add_note(session, "J1885", "Check the vial size on the MAR.", "bob@cc.test",
                       customer_facing=True)

    later = ingest(kb_factory, kb_settings, load_mail("modifier_25_or_59"))
    case = case_of(kb_factory, later.case_id)
    shown = case.facts["parts"][0]["notes"]
    assert [(n["id"], n["subject"]) for n in shown] == [(note_id, "20610+99214")]
    assert all("author" not in n for n in shown)
    text = case.drafts[-1].text
    assert "- 20610 / 99214: Document the separate E/M in its own note section." in text
    assert "ann@cc.test" not in text  # the author's address stays inside the service
    assert "Internal: payer audits" not in text  # internal notes stay with the consultants
    assert "Check the vial size" not in text  # a note on another code stays out

    drug = ingest(kb_factory, kb_settings, load_mail("drug_ketorolac_j1885"))
    drug_text = case_of(kb_factory, drug.case_id).drafts[-1].text
    assert "- J1885: Check the vial size on the MAR." in drug_text and "bob@cc.test" not in drug_text

    with kb_factory() as session, session.begin():
        notes.remove_note(session, note_id, "ann@cc.test")
    again = ingest(kb_factory, kb_settings, load_mail("bundling_commercial_20610_99214"))
    assert "Document the separate E/M" not in case_of(kb_factory, again.case_id).drafts[-1].text


def test_approval_signs_with_the_console_user_and_audits_the_diff(kb_factory, kb_settings):
    from consultant.review.models import ConsultantUser

    with kb_factory() as session, session.begin():
        session.add(ConsultantUser(email="ann@cc.test", name="Ann Coder", credential="CPC",
                                   password_hash="x"))
    mail = ingest(kb_factory, kb_settings, load_mail("bundling_77301_77306"))
    case = case_of(kb_factory, mail.case_id)
    machine = case.drafts[-1].text
    edited = machine.replace("[Consultant:", "[").replace(
        "=== END OF SUGGESTED ANSWER ===", "Please call us if the payer disagrees.\n=== END OF SUGGESTED ANSWER ===")
    effects = actions.approve(kb_factory, kb_settings, case.id, text=edited, by="ann@cc.test")
    body = sent_text(kb_factory, effects.outbox_ids[0])
    assert "Answered by Ann Coder, CPC" in body
    assert "do not report 77306 with it" in body
    assert "American Medical Association" not in body  # no CPT descriptor was shown
    with kb_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id,
                                                         AuditEvent.action == "approved")).one()
        diff = event.detail["machine_diff"]
        versions = session.scalars(select(Draft.author).where(Draft.case_id == case.id)
                                   .order_by(Draft.version)).all()
    assert versions == ["machine", "ann@cc.test"]
    assert diff["machine_version"] == 1 and diff["changed"] is True
    assert "+Please call us if the payer disagrees." in diff["diff"]
    assert diff["diff"].startswith("--- machine draft v1")


def test_unedited_approval_records_an_empty_diff(kb_factory, kb_settings):
    mail = ingest(kb_factory, kb_settings, load_mail("bundling_77301_77306"))  # no open prompt
    actions.approve(kb_factory, kb_settings, mail.case_id, text=None, by="cli")
    with kb_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.case_id == mail.case_id,
                                                         AuditEvent.action == "approved")).one()
    assert event.detail["machine_diff"]["changed"] is False
