"""The pipeline's decisions on real databases: cases, dispositions, threading, quota, approval."""

from __future__ import annotations

from email.utils import make_msgid

import pytest
from sqlalchemy import event, func, select, text

from consultant.audit.verify import verify
from consultant.intake.store import Location, store_raw
from consultant.models import AuditEvent, Case, InboundMail, Outbox, QuotaEntry
from consultant.processing import draft_case, process_mail
from consultant.quota import ledger
from consultant.quota.admin import set_plan
from consultant.review.actions import ActionError, approve, reject
from tests.conftest import question_mail


def ingest(factory, settings, raw: bytes):  # type: ignore[no-untyped-def]
    stored = store_raw(factory, raw, Location("cli"))
    effects = process_mail(factory, settings, stored.mail_id)
    with factory() as s:
        mail = s.get(InboundMail, stored.mail_id)
        return mail, effects


def test_question_becomes_case_with_draft(factory, settings):
    mail, effects = ingest(factory, settings, question_mail())
    assert mail.disposition == "case"
    with factory() as s:
        case = s.get(Case, mail.case_id)
        assert case.status == "awaiting_review"
        assert case.requester.email == "coder@clinic.test"
        assert case.drafts[0].author == "machine"
        assert "77301" in case.drafts[0].text or case.codes == []  # codes depend on the KB
    assert effects.outbox_ids == []


def test_a_new_case_is_written_once_at_commit_and_its_events_name_it(factory, settings):
    # The case is inserted complete, with its draft, by the commit's one flush: no UPDATE of a
    # row inserted earlier in the transaction for its id.  Its audit events, added while it had
    # no id, carry the id it got.
    stored = store_raw(factory, question_mail(sender="new.coder@clinic.test"), Location("cli"))
    with factory() as s:
        before = s.execute(select(func.coalesce(func.max(AuditEvent.seq), 0))).scalar_one()
    statements: list[str] = []
    engine = factory.kw["bind"]
    listener = lambda *args: statements.append(args[2].split(None, 3)[:3])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        process_mail(factory, settings, stored.mail_id)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    writes = [" ".join(s) for s in statements if s[0] in ("INSERT", "UPDATE")]
    assert writes.count("INSERT INTO cases") == 1
    assert not [w for w in writes if w.startswith("UPDATE cases")], writes
    with factory() as s:
        mail = s.get(InboundMail, stored.mail_id)
        assert mail.disposition == "case" and mail.case_id is not None
        events = s.execute(select(AuditEvent.action, AuditEvent.case_id)
                           .where(AuditEvent.seq > before).order_by(AuditEvent.seq)).all()
        assert [e.action for e in events] == ["received", "drafted", "classified"]
        assert {e.case_id for e in events} == {mail.case_id}
    assert verify(factory).ok


def test_a_returning_requesters_new_case_counts_the_open_cases_before_it(factory, settings):
    # Its quota check runs before the case is inserted: every open case of theirs is ahead.
    settings.quota.guest = 2
    first, _ = ingest(factory, settings, question_mail(sender="back@clinic.test", subject="one 99213"))
    second, _ = ingest(factory, settings, question_mail(sender="back@clinic.test", subject="two 99214"))
    third, _ = ingest(factory, settings, question_mail(sender="back@clinic.test", subject="three 99215"))
    assert [first.disposition, second.disposition, third.disposition] == ["case", "case", "held_quota"]


def test_same_bytes_stored_once_and_processing_is_idempotent(factory, settings):
    raw = question_mail()
    first = store_raw(factory, raw, Location("smtp"))
    second = store_raw(factory, raw, Location("smtp"))
    assert first.mail_id == second.mail_id and first.created and not second.created
    process_mail(factory, settings, first.mail_id)
    process_mail(factory, settings, first.mail_id)
    with factory() as s:
        assert s.execute(select(func.count(Case.id))).scalar_one() == 1


def test_same_message_id_other_bytes_is_duplicate(factory, settings):
    mid = make_msgid(domain="clinic.test")
    m1, _ = ingest(factory, settings, question_mail(message_id=mid))
    m2, _ = ingest(factory, settings, question_mail(message_id=mid, X_Copy="2"))
    assert (m1.disposition, m2.disposition) == ("case", "duplicate")
    assert m2.rule_hits == ["is_duplicate"] and m2.case_id is None


def test_the_first_stored_copy_is_the_case_whichever_is_processed_first(factory, settings):
    mid = make_msgid(domain="clinic.test")
    first = store_raw(factory, question_mail(message_id=mid), Location("cli"))
    second = store_raw(factory, question_mail(message_id=mid, X_Copy="2"), Location("cli"))
    process_mail(factory, settings, second.mail_id)
    process_mail(factory, settings, first.mail_id)
    with factory() as s:
        assert s.get(InboundMail, first.mail_id).disposition == "case"
        assert s.get(InboundMail, second.mail_id).disposition == "duplicate"


def test_a_message_id_intake_did_not_store_is_still_checked_for_copies(factory, settings):
    # The lock's statement answers for the Message-ID stored at intake; one only the full
    # parse found is asked about separately.
    mid = make_msgid(domain="clinic.test")
    ingest(factory, settings, question_mail(message_id=mid))
    copy = store_raw(factory, question_mail(message_id=mid, X_Copy="2"), Location("cli"))
    with factory() as s, s.begin():
        s.get(InboundMail, copy.mail_id).message_id = None
    process_mail(factory, settings, copy.mail_id)
    with factory() as s:
        mail = s.get(InboundMail, copy.mail_id)
        assert (mail.disposition, mail.message_id) == ("duplicate", mid)


@pytest.mark.parametrize("headers,disposition,rule", [
    ({"Auto_Submitted": "auto-replied"}, "auto_reply", "is_auto_submitted"),
    ({"Precedence": "bulk"}, "auto_reply", "is_auto_submitted"),
    ({"Auto_Submitted": "auto-replied", "X_Failed_Recipients": "x@y.test"}, "bounce", "is_bounce"),
])
def test_machine_mail_gets_no_case(factory, settings, headers, disposition, rule):
    mail, _ = ingest(factory, settings, question_mail(**headers))
    assert mail.disposition == disposition and mail.rule_hits[0] == rule
    assert mail.case_id is None


def test_mailer_daemon_bounce_and_self_loop(factory, settings):
    bounce, _ = ingest(factory, settings, question_mail(sender="MAILER-DAEMON@mx.test",
                                                        subject="Undelivered Mail Returned to Sender"))
    assert bounce.disposition == "bounce"
    loop, _ = ingest(factory, settings, question_mail(sender="consult@cc.test"))
    assert loop.disposition == "quarantined" and loop.rule_hits == ["is_from_self"]


def test_unparseable_mail_is_quarantined_with_reason(factory, settings):
    raw = b"From: a@b.test\r\nTo: consult@cc.test\r\nX-Huge: " + b"x" * 70000 + b"\r\n\r\nbody\r\n"
    mail, _ = ingest(factory, settings, raw)
    assert mail.disposition == "quarantined"
    assert "header" in mail.disposition_reason


def test_followup_threads_by_references_and_by_tag(factory, settings):
    first_id = make_msgid(domain="clinic.test")
    m1, _ = ingest(factory, settings, question_mail(message_id=first_id))
    reply, _ = ingest(factory, settings, question_mail(subject="Re: more", body="Also 77338 x 2 units.",
                                                       In_Reply_To=first_id))
    assert reply.disposition == "followup" and reply.case_id == m1.case_id
    tagged, _ = ingest(factory, settings, question_mail(subject=f"Re: thing [CC-{m1.case_id}]",
                                                        body="And the payer is Medicare."))
    assert tagged.disposition == "followup" and tagged.rule_hits == ["is_followup_by_subject_tag"]
    # The tag alone does not let somebody else attach mail to the case.
    stranger, _ = ingest(factory, settings, question_mail(sender="other@else.test",
                                                          subject=f"Re: [CC-{m1.case_id}]"))
    assert stranger.disposition == "case" and stranger.case_id != m1.case_id
    with factory() as s:
        case = s.get(Case, m1.case_id)
        assert len(case.mails) == 3 and len(case.drafts) == 3  # re-drafted on each follow-up


def test_guest_quota_hold_notice_and_upgrade(factory, settings):
    m1, _ = ingest(factory, settings, question_mail())
    effects = approve(factory, settings, m1.case_id, text="Answer one.", by="c@cc.test")
    assert len(effects.outbox_ids) == 1
    with factory() as s:
        out = s.get(Outbox, effects.outbox_ids[0])
        assert out.charges_quota and out.kind == "answer"
        assert s.execute(select(func.sum(QuotaEntry.delta))
                         .where(QuotaEntry.kind == "charge")).scalar_one() == -1
        assert b"This answer used 1 of 1 answers on your guest plan; 0 remain." in out.raw
    m2, e2 = ingest(factory, settings, question_mail(subject="Second question"))
    assert m2.disposition == "held_quota"
    assert len(e2.outbox_ids) == 1  # one over-quota notice
    m3, e3 = ingest(factory, settings, question_mail(subject="Third question"))
    assert m3.disposition == "held_quota" and e3.outbox_ids == []  # at most one notice a day
    with factory() as s:
        notice = s.get(Outbox, e2.outbox_ids[0])
        assert notice.kind == "quota_notice" and not notice.charges_quota
        assert b"Auto-Submitted: auto-replied" in notice.raw and b"Register" in notice.raw
        assert s.get(Case, m2.case_id).status == "held_quota"
    up = set_plan(factory, settings, "Coder@Clinic.test", "registered", by="cli").effects
    assert up.draft_case_ids == [m2.case_id, m3.case_id]
    for case_id in up.draft_case_ids:
        draft_case(factory, settings, case_id)
    with factory() as s:
        assert s.get(Case, m2.case_id).status == "awaiting_review"
        assert s.get(Case, m3.case_id).status == "awaiting_review"
        requester = s.get(Case, m2.case_id).requester
        assert ledger.status(s, settings.quota, requester).answers_remaining == 5


def test_two_open_questions_from_a_guest_hold_the_second(factory, settings):
    m1, _ = ingest(factory, settings, question_mail())
    m2, _ = ingest(factory, settings, question_mail(subject="another"))
    assert (m1.disposition, m2.disposition) == ("case", "held_quota")


def test_approve_refuses_without_quota_and_rejected_cases_cost_nothing(factory, settings):
    m1, _ = ingest(factory, settings, question_mail())
    reject(factory, m1.case_id, reason="not a coding question", by="c@cc.test")
    with pytest.raises(ActionError):
        approve(factory, settings, m1.case_id, text=None, by="c@cc.test")
    m2, _ = ingest(factory, settings, question_mail(subject="real one"))
    assert m2.disposition == "case"  # the rejected case did not use the guest answer
    approve(factory, settings, m2.case_id, text="Answer two.", by="c@cc.test")
    with pytest.raises(ActionError, match="approved"):
        approve(factory, settings, m2.case_id, text="Again.", by="c@cc.test")


def test_unknown_plan_is_a_clear_error(factory, settings):
    with pytest.raises(ledger.UnknownPlan, match="known: guest, registered"):
        set_plan(factory, settings, "a@b.test", "platinum", by="cli")


def test_guest_registers_by_replying_to_the_notice(factory, settings):
    m1, _ = ingest(factory, settings, question_mail())
    approve(factory, settings, m1.case_id, text="Answer one.", by="c@cc.test")
    m2, e2 = ingest(factory, settings, question_mail(subject="Second question"))
    m3, _ = ingest(factory, settings, question_mail(subject="Third question"))
    with factory() as s:
        notice_id = s.get(Outbox, e2.outbox_ids[0]).message_id
    reply, effects = ingest(factory, settings, question_mail(
        subject="Re: REGISTER", body="register me please", In_Reply_To=notice_id))
    assert reply.disposition == "followup" and "is_registration" in reply.rule_hits
    assert effects.draft_case_ids == [m3.case_id]  # the other held case; this one is re-drafted
    [confirmation] = effects.outbox_ids
    for case_id in effects.draft_case_ids:
        draft_case(factory, settings, case_id)
    with factory() as s:
        assert s.get(Case, m2.case_id).requester.plan == "registered"
        assert s.get(Case, m2.case_id).status == "awaiting_review"
        assert s.get(Case, m3.case_id).status == "awaiting_review"
        out = s.get(Outbox, confirmation)
        assert out.kind == "notice" and b"You are now registered" in out.raw
        assert "register me please" not in s.get(Case, m2.case_id).drafts[-1].text


def test_approval_without_quota_holds_the_case_keeps_the_edit_and_notifies(factory, settings):
    settings.quota.guest = 2
    m1, _ = ingest(factory, settings, question_mail())
    m2, _ = ingest(factory, settings, question_mail(subject="two"))
    with factory() as s, s.begin():
        # The balance dropped after both were drafted (an operator's correction).
        requester = s.get(Case, m1.case_id).requester
        s.add(QuotaEntry(account=f"r:{requester.id}", kind="expire", bucket="lasting", delta=-1,
                         actor="ops@cc.test", reason="correction"))
    approve(factory, settings, m1.case_id, text="One.", by="c@cc.test")
    with pytest.raises(ActionError, match="no answers left"):
        approve(factory, settings, m2.case_id, text="Edited answer two.", by="c@cc.test")
    with factory() as s:
        case = s.get(Case, m2.case_id)
        assert case.status == "held_quota"
        assert case.drafts[-1].text == "Edited answer two." and case.drafts[-1].author == "c@cc.test"
        kinds = s.execute(select(Outbox.kind).order_by(Outbox.id)).scalars().all()
        assert kinds == ["answer", "quota_notice"]  # the held case's requester is told


def test_nul_characters_in_decoded_headers_and_body_are_stored(factory, settings):
    """Found by the bench: a corpus subject decodes to a NUL, which PostgreSQL text rejects."""
    raw = question_mail(body="Can 77301 and 77338 be billed together?")
    raw = raw.replace(b"Subject: Can 77301 and 77338 be billed together?",
                      b"Subject: =?utf-8?q?NUL=00here_77301?=")
    mail, _ = ingest(factory, settings, raw)
    assert mail.disposition == "case" and mail.subject == "NULhere 77301"


def test_a_drafting_bug_leaves_the_case_with_a_manual_draft(factory, settings, monkeypatch):
    from consultant import processing

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("a bug in drafting")

    monkeypatch.setattr(processing, "make_draft", broken)
    mail_id = store_raw(factory, question_mail(), Location("cli")).mail_id
    process_mail(factory, settings, mail_id)
    with factory() as s:
        case = s.execute(select(Case)).scalar_one()
        assert case.status == "awaiting_review" and "draft_failed" in case.rule_hits
        assert "automatic drafting failed" in case.drafts[-1].text
        assert "a bug in drafting" in case.drafts[-1].text
        assert s.get(InboundMail, mail_id).disposition == "case"


def test_a_database_error_in_drafting_commits_nothing_so_the_mail_is_retried(
        factory, settings, monkeypatch):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from consultant import processing

    def failing_query(session, *args, **kwargs):  # type: ignore[no-untyped-def]
        session.execute(text("SELECT no_such_column FROM cases"))

    monkeypatch.setattr(processing, "make_draft", failing_query)
    mail_id = store_raw(factory, question_mail(), Location("cli")).mail_id
    with pytest.raises(DBAPIError):
        process_mail(factory, settings, mail_id)
    with factory() as s:
        assert s.execute(select(func.count(Case.id))).scalar() == 0
        assert s.get(InboundMail, mail_id).disposition is None  # still to be processed
    monkeypatch.undo()
    process_mail(factory, settings, mail_id)  # the retry
    with factory() as s:
        assert s.execute(select(Case.status)).scalar_one() == "awaiting_review"


def test_a_raw_8bit_byte_in_a_broken_from_header_is_stored_not_raised(factory, settings):
    """Found by the long fuzz mode: an encoded word the strict parser refuses, then a raw 0x80,
    left a lone surrogate in the sender's address, which the database driver cannot encode."""
    raw = (b"From: =?utf-8?b?SmFuZQ0KQmNjOiB4QGV2aWwuZXhhbXBsZQ\x00=?=\x00\x80jane.doe@clinic.example>"
           b"\r\nTo: consult@cc.test\r\nSubject: x\r\nMessage-ID: <q-8bit@clinic.test>\r\n\r\n"
           b"Can 77301 and 77338 be billed together?\r\n")
    mail, _ = ingest(factory, settings, raw)
    assert mail.disposition is not None
    assert "\ufffd" in (mail.from_addr or "") or mail.disposition == "quarantined"


def test_only_the_processing_transaction_commits_without_waiting_for_disk(factory, settings):
    # process_mail's own transaction may skip PostgreSQL's WAL flush (a lost one is processed
    # again from the durably stored mail); intake's, and every transaction after it on the same
    # pooled connection (sending included), keep the durable default.
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    at_commit: list[str] = []

    def setting(conn) -> str:  # type: ignore[no-untyped-def]
        # Straight on the driver's connection: no statement events, no new transaction.
        return conn.connection.dbapi_connection.execute("SHOW synchronous_commit").fetchone()[0]

    event.listen(engine, "commit", lambda conn: at_commit.append(setting(conn)))
    stored = store_raw(factory, question_mail(), Location("cli"))
    process_mail(factory, settings, stored.mail_id)
    with factory() as s:
        assert s.get(InboundMail, stored.mail_id).disposition == "case"
        assert s.execute(text("SHOW synchronous_commit")).scalar() == "on"
    assert at_commit == ["on", "off"]  # intake's commit, then processing's
