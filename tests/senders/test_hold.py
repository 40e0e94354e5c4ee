"""The sender rules in the pipeline (SQLite and PostgreSQL): an unverified sender is held with one
notice, not answered, not charged; a reply threading to the notice confirms; warn only flags."""

from __future__ import annotations

from sqlalchemy import func, select

from consultant.intake.store import Location, store_raw
from consultant.models import Case, Draft, InboundMail, Outbox, QuotaEntry
from consultant.processing import process_mail
from consultant.review.actions import approve
from tests.conftest import question_mail

OURS = "mx.cc.test"


def ingest(factory, settings, raw: bytes, source: str = "imap"):  # type: ignore[no-untyped-def]
    stored = store_raw(factory, raw, Location(source))
    effects = process_mail(factory, settings, stored.mail_id)
    with factory() as s:
        return s.get(InboundMail, stored.mail_id), effects


def hold_policy(settings, policy: str = "hold"):  # type: ignore[no-untyped-def]
    settings.authenticity.policy = policy
    settings.authenticity.authserv_id = OURS
    return settings


def count(factory, model, *where) -> int:  # type: ignore[no-untyped-def]
    with factory() as s:
        return int(s.execute(select(func.count(model.id)).where(*where)).scalar_one())


def test_spoofed_sender_is_held_with_one_notice_and_confirmed_by_a_reply(factory, settings):
    hold_policy(settings)
    spoofed = question_mail(Authentication_Results=f"{OURS}; spf=fail smtp.mailfrom=evil.test; "
                                                    "dkim=none; dmarc=fail header.from=clinic.test")
    mail, effects = ingest(factory, settings, spoofed)
    assert mail.disposition == "held_unverified"
    assert mail.rule_hits == ["new_case", "is_unverified_sender"]
    assert "dmarc=fail" in mail.disposition_reason
    [notice_id] = effects.outbox_ids
    with factory() as s:
        case = s.get(Case, mail.case_id)
        assert case.status == "unverified" and "unverified_sender" in case.flags
        assert case.drafts == []  # not answered: nothing drafted for a consultant to approve
        notice = s.get(Outbox, notice_id)
        assert notice.kind == "verify_notice" and not notice.charges_quota
        assert notice.to_addr == "coder@clinic.test"
        assert b"reply to this message" in notice.raw and b"Auto-Submitted: auto-replied" in notice.raw
        assert f"In-Reply-To: {mail.message_id}".encode() in notice.raw
        notice_message_id, case_id = notice.message_id, case.id
    # More forged mail in the same thread: no second notice.
    again, effects = ingest(factory, settings, question_mail(
        subject=f"Re: more [CC-{case_id}]", Authentication_Results=f"{OURS}; dmarc=fail"))
    assert again.case_id == case_id and effects.outbox_ids == []
    # A reply with only the (guessable) subject tag does not confirm.
    tagged, _ = ingest(factory, settings, question_mail(subject=f"Re: yes [CC-{case_id}]",
                                                        body="It was me."))
    assert "confirms_sender" not in tagged.rule_hits
    assert count(factory, Case, Case.status == "unverified") == 1
    # The address owner replies to the notice itself: confirmed, drafted, answerable.
    reply, _ = ingest(factory, settings, question_mail(
        subject=f"Re: Can 77301 and 77338 be billed together? [CC-{case_id}]",
        body="Yes, that was me.", In_Reply_To=notice_message_id))
    assert reply.disposition == "followup" and "confirms_sender" in reply.rule_hits
    with factory() as s:
        case = s.get(Case, case_id)
        assert case.status == "awaiting_review" and "unverified_sender" not in case.flags
        assert "that was me" not in case.drafts[-1].text  # the confirmation is not the question
    assert count(factory, QuotaEntry, QuotaEntry.kind == "charge") == 0
    approve(factory, settings, case_id, text="Both may be reported.\n", by="c@cc.test")
    assert count(factory, QuotaEntry, QuotaEntry.kind == "charge") == 1


def test_a_forged_pass_from_a_foreign_authserv_id_is_ignored(factory, settings):
    hold_policy(settings)
    forged = question_mail(Authentication_Results="mx.attacker.test; dkim=pass "
                                                  "header.d=clinic.test; spf=pass; dmarc=pass")
    mail, effects = ingest(factory, settings, forged)
    assert mail.disposition == "held_unverified" and "mx.attacker.test" in mail.disposition_reason
    assert len(effects.outbox_ids) == 1


def test_our_pass_is_answered_normally(factory, settings):
    hold_policy(settings)
    mail, effects = ingest(factory, settings, question_mail(
        Authentication_Results=f"{OURS}; dkim=pass header.d=clinic.test; dmarc=pass"))
    assert mail.disposition == "case" and mail.rule_hits == ["new_case"]
    assert effects.outbox_ids == [] and count(factory, Draft) == 1


def test_warn_flags_the_case_but_drafts_it(factory, settings):
    hold_policy(settings, "warn")
    mail, effects = ingest(factory, settings, question_mail())  # no Authentication-Results
    assert mail.disposition == "case" and "is_unverified_sender" in mail.rule_hits
    with factory() as s:
        case = s.get(Case, mail.case_id)
        assert case.status == "awaiting_review" and "unverified_sender" in case.flags
    assert effects.outbox_ids == []


def test_an_unverified_follow_up_holds_an_open_case(factory, settings):
    hold_policy(settings)
    first, _ = ingest(factory, settings, question_mail(
        Authentication_Results=f"{OURS}; dmarc=pass"))
    forged, effects = ingest(factory, settings, question_mail(
        subject="Re: never mind, different question", In_Reply_To=first.message_id))
    assert forged.case_id == first.case_id and forged.disposition == "held_unverified"
    assert len(effects.outbox_ids) == 1
    with factory() as s:
        assert s.get(Case, first.case_id).status == "unverified"


def test_a_register_reply_needs_no_confirmation(factory, settings):
    hold_policy(settings)
    first, _ = ingest(factory, settings, question_mail(Authentication_Results=f"{OURS}; dmarc=pass"))
    approve(factory, settings, first.case_id, text="Answer.\n", by="c@cc.test")
    second, effects = ingest(factory, settings, question_mail(
        subject="Second", Authentication_Results=f"{OURS}; dmarc=pass"))
    assert second.disposition == "held_quota"
    with factory() as s:
        notice = s.get(Outbox, effects.outbox_ids[0]).message_id
    # The domain signs nothing, so the reply carries no pass; it threads to our notice.
    reply, _ = ingest(factory, settings, question_mail(subject="Re: REGISTER",
                                                       In_Reply_To=notice))
    assert reply.rule_hits == ["is_followup_by_references", "is_registration"]
    with factory() as s:
        assert s.get(Case, second.case_id).status == "awaiting_review"
