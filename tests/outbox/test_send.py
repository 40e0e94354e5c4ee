"""Sending over real SMTP: threading headers, retries, permanent failures, no blind re-send."""

from __future__ import annotations

from email.utils import make_msgid

from sqlalchemy import select

from consultant.intake.store import Location, store_raw
from consultant.models import Case, Outbox, QuotaEntry
from consultant.outbox.compose import MAX_REFERENCES, capped_references, reply_subject
from consultant.outbox.send import reconcile, send_one
from consultant.outbox.transport import SmtpTransport
from consultant.processing import process_mail
from consultant.review.actions import approve
from tests.conftest import question_mail


def approved_case(factory, settings, raw_subject: bytes | None = None, **mail):  # type: ignore[no-untyped-def]
    raw = question_mail(**mail)
    if raw_subject is not None:
        head, _, body = raw.partition(b"\n\n")
        lines = [raw_subject if ln.startswith(b"Subject:") else ln for ln in head.split(b"\n")]
        raw = b"\n".join(lines) + b"\n\n" + body
    stored = store_raw(factory, raw, Location("cli"))
    process_mail(factory, settings, stored.mail_id)
    with factory() as s:
        case_id = s.execute(Case.__table__.select()).first().id
    # confirm_phi: the hostile subject below carries an e-mail address, which redaction removes.
    effects = approve(factory, settings, case_id, text="The answer.\n", by="consultant@cc.test",
                      confirm_phi=True)
    return case_id, effects.outbox_ids[0]


def to_sink(settings, sink):  # type: ignore[no-untyped-def]
    settings.smtp_out.maildir = ""
    settings.smtp_out.host, settings.smtp_out.port = sink.host, sink.port
    return SmtpTransport(settings.smtp_out)


def test_answer_threads_into_the_requesters_conversation(factory, settings, smtp_sink):
    first = make_msgid(domain="clinic.test")
    refs = " ".join(make_msgid(domain="old.test") for _ in range(15))
    case_id, outbox_id = approved_case(factory, settings, message_id=first, References=refs,
                                       raw_subject=b"Subject: =?utf-8?q?Re=3A_Re=3A_77301_and_77338"
                                                   b"=0D=0ABcc=3A_evil=40x.test?=")
    transport = to_sink(settings, smtp_sink)
    assert send_one(factory, settings, outbox_id, transport) == "sent"
    transport.close()
    [msg] = smtp_sink.parsed()
    assert msg["In-Reply-To"] == first
    references = msg["References"].split()
    assert len(references) == MAX_REFERENCES and references[-1] == first
    assert msg["Message-ID"].endswith("@cc.test>")
    # (the address itself is redacted like any e-mail address that is not the sender's)
    assert msg["Subject"] == f"Re: 77301 and 77338 Bcc: [EMAIL] [CC-{case_id}]"
    assert msg["Bcc"] is None  # the CR/LF in the subject could not inject a header
    assert smtp_sink.messages[0]["to"] == ["coder@clinic.test"]
    with factory() as s:
        assert s.get(Case, case_id).status == "sent"
        out = s.get(Outbox, outbox_id)
        assert out.status == "sent" and out.sent_at is not None
    # Sending again is a no-op: the row is no longer pending.
    assert send_one(factory, settings, outbox_id, to_sink(settings, smtp_sink)) == "sent"
    assert len(smtp_sink.messages) == 1


def test_temporary_failure_backs_off_then_succeeds(factory, settings, smtp_sink):
    case_id, outbox_id = approved_case(factory, settings)
    smtp_sink.handler.reply = "451 4.3.0 try again later"
    transport = to_sink(settings, smtp_sink)
    assert send_one(factory, settings, outbox_id, transport) == "pending"
    with factory() as s:
        out = s.get(Outbox, outbox_id)
        assert out.attempts == 1 and out.next_attempt_at is not None and "451" in out.last_error
        out.next_attempt_at = None  # time passes
        s.commit()
    smtp_sink.handler.reply = None
    assert send_one(factory, settings, outbox_id, transport) == "sent"
    transport.close()
    assert len(smtp_sink.messages) == 1


def test_permanent_failure_is_recorded_and_refunded(factory, settings, smtp_sink):
    case_id, outbox_id = approved_case(factory, settings)
    smtp_sink.handler.reply = "550 5.1.1 mailbox unavailable"
    assert send_one(factory, settings, outbox_id, to_sink(settings, smtp_sink)) == "failed"
    with factory() as s:
        case = s.get(Case, case_id)
        assert case.status == "failed" and "550" in case.failure
        entries = [(q.kind, q.delta) for q in s.query(QuotaEntry).order_by(QuotaEntry.id)]
        assert entries == [("grant", 1), ("charge", -1), ("refund", 1)]


def test_interrupted_send_is_never_blindly_repeated(factory, settings, smtp_sink):
    """A row left in 'sending' by a dead process goes to needs_check, not back to pending."""
    case_id, outbox_id = approved_case(factory, settings)
    with factory() as s:
        out = s.get(Outbox, outbox_id)
        out.status, out.claimed_by = "sending", "nohost-that-exists:1"
        s.commit()
    from datetime import timedelta

    counts = reconcile(factory, settings, to_sink(settings, smtp_sink), None,
                       stale_after=timedelta(seconds=0))
    assert counts == {"sent": 0, "needs_check": 1}
    with factory() as s:
        assert s.get(Outbox, outbox_id).status == "needs_check"
    assert smtp_sink.messages == []


def test_reply_subject_is_one_clean_line():
    assert reply_subject("RE: Fwd: [CC-3] Question\t about\n 99213", 7) == "Re: Question about 99213 [CC-7]"
    assert reply_subject("", 1) == "Re: Your coding question [CC-1]"
    assert capped_references([], "<a@b>") == ["<a@b>"]


def _queued_rows(factory, settings, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    from consultant.outbox.compose import build_message, new_message_id

    ids = []
    with factory() as s:
        for i in range(n):
            message_id = new_message_id(settings)
            raw = build_message(settings, to_addr=f"coder{i}@clinic.test", subject=f"Re: q{i}",
                                text="The answer.\n", html=None, message_id=message_id,
                                in_reply_to=None, references=[])
            row = Outbox(kind="notice", message_id=message_id, to_addr=f"coder{i}@clinic.test",
                         subject=f"Re: q{i}", raw=raw, status="pending", attempts=0)
            s.add(row)
            s.flush()
            ids.append(row.id)
        s.commit()
    return ids


def test_a_send_run_goes_on_with_due_answers_and_leaves_the_rest(factory, settings, smtp_sink):
    from datetime import timedelta

    from consultant.models import utcnow
    from consultant.outbox.send import send_batch

    first, later, second, third = _queued_rows(factory, settings, 4)
    with factory() as s:
        s.get(Outbox, later).next_attempt_at = utcnow() + timedelta(hours=1)  # backing off
        s.commit()
    transport = to_sink(settings, smtp_sink)
    got = send_batch(factory, settings, transport, first_id=second, limit=10)
    assert got == {second: "sent", first: "sent", third: "sent"}
    assert sorted(m["to"][0] for m in smtp_sink.messages) == [
        "coder0@clinic.test", "coder2@clinic.test", "coder3@clinic.test"]
    with factory() as s:
        assert {i: s.get(Outbox, i).status for i in (first, later, second, third)} == {
            first: "sent", later: "pending", second: "sent", third: "sent"}
        assert all(s.get(Outbox, i).attempts == 1 for i in (first, second, third))
    # The row's own task, run afterwards, finds it sent and sends nothing.
    assert send_batch(factory, settings, transport, first_id=first, limit=10) == {first: "sent"}
    assert len(smtp_sink.messages) == 3
    transport.close()
    # Each send is audited, and the events are sealed into the audit chain like any other.
    from consultant.audit.verify import verify
    from consultant.models import AuditEvent

    with factory() as s:
        sent = s.execute(select(AuditEvent).where(AuditEvent.action == "sent")).scalars().all()
    assert sorted(e.detail["outbox_id"] for e in sent) == sorted([first, second, third])
    assert all(e.seq is not None for e in sent)
    result = verify(factory)
    assert result.ok, result.problems


def test_a_temporary_failure_ends_the_run(factory, settings, smtp_sink):
    from consultant.outbox.send import send_batch

    first, second = _queued_rows(factory, settings, 2)
    smtp_sink.handler.reply = "451 4.3.0 try again later"
    transport = to_sink(settings, smtp_sink)
    assert send_batch(factory, settings, transport, first_id=first, limit=10) == {first: "pending"}
    with factory() as s:
        assert s.get(Outbox, second).status == "pending" and s.get(Outbox, second).attempts == 0
    transport.close()


def test_a_run_whose_own_answer_is_gone_helps_with_the_backlog(factory, settings, smtp_sink):
    from consultant.outbox.send import send_batch

    done, waiting = _queued_rows(factory, settings, 2)
    transport = to_sink(settings, smtp_sink)
    assert send_one(factory, settings, done, transport) == "sent"
    assert send_batch(factory, settings, transport, first_id=done, limit=10) == {
        done: "sent", waiting: "sent"}
    # send_one stays to its own row.
    assert send_one(factory, settings, done, transport) == "sent"
    assert len(smtp_sink.messages) == 2
    transport.close()


def test_a_backlog_is_sent_in_groups_with_one_commit_each(factory, settings, smtp_sink):
    from sqlalchemy import event

    from consultant.outbox.send import send_batch

    ids = _queued_rows(factory, settings, 10)
    commits: list[int] = []
    engine = factory.kw["bind"]

    def count(conn):  # type: ignore[no-untyped-def]
        commits.append(1)

    event.listen(engine, "commit", count)
    settings.smtp_out.send_group = 5
    transport = to_sink(settings, smtp_sink)
    got = send_batch(factory, settings, transport, first_id=ids[0], limit=100)
    event.remove(engine, "commit", count)
    assert got == {i: "sent" for i in ids}
    # claim 5 | record 5 + claim 5 | record 5 + claim none
    assert len(commits) == 3
    assert len(smtp_sink.messages) == 10
    with factory() as s:
        assert all(s.get(Outbox, i).status == "sent" and s.get(Outbox, i).attempts == 1
                   for i in ids)
    transport.close()


def test_a_temporary_failure_mid_group_keeps_what_went_out_and_gives_back_the_rest(
        factory, settings, smtp_sink):
    from consultant.outbox.send import send_batch

    first, second, third, fourth = _queued_rows(factory, settings, 4)

    def fail_after_two(envelope):  # type: ignore[no-untyped-def]
        if len(smtp_sink.handler.messages) == 1:  # this is the second: the next one fails
            smtp_sink.handler.reply = "451 4.3.0 try again later"

    smtp_sink.handler.on_data = fail_after_two
    transport = to_sink(settings, smtp_sink)
    got = send_batch(factory, settings, transport, first_id=first, limit=10)
    assert got == {first: "sent", second: "sent", third: "pending"}
    assert len(smtp_sink.messages) == 2
    with factory() as s:
        rows = {i: s.get(Outbox, i) for i in (first, second, third, fourth)}
        assert [rows[i].status for i in (first, second, third, fourth)] == [
            "sent", "sent", "pending", "pending"]
        assert rows[third].attempts == 1 and rows[third].next_attempt_at is not None
        # Claimed with the group but never tried: back as it was.
        assert rows[fourth].attempts == 0 and rows[fourth].claimed_by is None
    transport.close()


def test_a_sender_dying_mid_group_never_sends_an_answer_twice(factory, settings, smtp_sink):
    from datetime import timedelta

    from consultant.outbox.send import send_batch

    ids = _queued_rows(factory, settings, 3)

    class Killed(BaseException):
        """Stands for SIGKILL: nothing after it runs (not even except Exception)."""

    def die_on_second(claimed):  # type: ignore[no-untyped-def]
        if claimed.id == ids[1]:
            raise Killed

    transport = to_sink(settings, smtp_sink)
    try:
        send_batch(factory, settings, transport, first_id=ids[0], limit=10, after_accept=die_on_second)
    except Killed:
        pass
    transport.close()
    with factory() as s:
        assert [s.get(Outbox, i).status for i in ids] == ["sending"] * 3
    # No Sent copy to check against: every row of the group goes to a human, none is re-sent.
    counts = reconcile(factory, settings, to_sink(settings, smtp_sink), None,
                       stale_after=timedelta(seconds=0))
    assert counts == {"sent": 0, "needs_check": 3}
    transport = to_sink(settings, smtp_sink)
    assert send_batch(factory, settings, transport, first_id=None, limit=10) == {}
    transport.close()
    assert len(smtp_sink.messages) == 2
