"""Loops and bounces: the loop header, signed Message-IDs, the daily cap, undeliverable addresses."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from consultant.mail.msgid import MessageIdSigner
from consultant.models import AuditEvent, Case, InboundMail, Outbox, Requester
from consultant.outbox import bounces
from consultant.outbox import send as outbox_send
from consultant.outbox.compose import new_message_id
from consultant.outbox.notices import queue_notice
from consultant.outbox.transport import SmtpTransport, make_transport
from consultant.quota.admin import set_plan
from consultant.review.actions import approve
from tests.conftest import question_mail
from tests.test_processing import ingest

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
NOTICE = {"subject": "s", "plan": "guest", "used": 1, "allowed": 1, "registered_extra": 5,
          "org": None, "member_cap": None, "renews_on": None, "upgrade_address": "",
          "upgrade_url": "", "service_address": "consult@cc.test", "service_name": "CaseConsultant"}


def _answered_case(factory, settings, sender="coder@clinic.test"):  # type: ignore[no-untyped-def]
    """A question answered and sent (to the test Maildir); returns (case id, sent raw bytes)."""
    mail, _ = ingest(factory, settings, question_mail(sender=sender))
    effects = approve(factory, settings, mail.case_id, text="Yes, with modifier 59.", by="c@cc.test")
    transport = make_transport(settings.smtp_out)
    for outbox_id in effects.outbox_ids:
        assert outbox_send.send_one(factory, settings, outbox_id, transport) == "sent"
    with factory() as s:
        out = s.execute(select(Outbox).where(Outbox.case_id == mail.case_id)).scalar_one()
        return mail.case_id, out.raw


def test_everything_we_send_carries_the_loop_header_and_a_signed_id(factory, settings):
    _, raw = _answered_case(factory, settings)
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg["X-CaseConsultant-Loop"] == settings.service.address
    assert MessageIdSigner(settings.service.message_id_secret, settings.domain).verify(msg["Message-ID"])


def test_mail_from_a_caseconsultant_is_never_answered(factory, settings):
    robot = question_mail(sender="consult@other-instance.test",
                          X_CaseConsultant_Loop="consult@other-instance.test")
    mail, effects = ingest(factory, settings, robot)
    assert mail.disposition == "auto_reply" and mail.rule_hits[0] == "is_loop"
    assert mail.case_id is None and effects.outbox_ids == []


def test_our_own_message_id_coming_back_is_recognised(factory, settings):
    mail, _ = ingest(factory, settings, question_mail(sender="someone@relay.test",
                                                      message_id=new_message_id(settings)))
    assert mail.disposition == "quarantined" and mail.rule_hits == ["is_from_self"]


def _dsn(original: bytes, recipient: str, status: str = "5.1.1", action: str = "failed",
         returned: str = "text/rfc822-headers") -> bytes:
    """A bounce as Postfix writes it (RFC 3464), returning the original's header block."""
    head = original.split(b"\r\n\r\n", 1)[0]
    return (
        b"From: MAILER-DAEMON@mx.clinic.test (Mail Delivery System)\r\n"
        b"To: consult@cc.test\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;"
        b" boundary=\"R\"\r\n\r\n"
        b"--R\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.clinic.test.\r\n"
        b"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.clinic.test\r\n\r\n"
        b"Final-Recipient: rfc822; " + recipient.encode() + b"\r\nAction: " + action.encode() +
        b"\r\nStatus: " + status.encode() + b"\r\nDiagnostic-Code: smtp; 550 " + status.encode() +
        b" user unknown\r\n\r\n"
        b"--R\r\nContent-Type: " + returned.encode() + b"\r\n\r\n" + head + b"\r\n\r\n--R--\r\n")


def test_hard_bounce_of_an_answer_marks_the_address_until_cleared(factory, settings):
    case_id, sent = _answered_case(factory, settings)
    bounce, _ = ingest(factory, settings, _dsn(sent, "coder@clinic.test"))
    assert bounce.disposition == "bounce"
    assert bounce.rule_hits[-2:] == ["is_bounce_of_ours", "address_undeliverable"]
    assert bounce.case_id == case_id  # shown in the case's thread
    with factory() as s:
        requester = s.execute(select(Requester).where(Requester.email == "coder@clinic.test")).scalar_one()
        assert requester.undeliverable_at is not None
        assert "5.1.1" in requester.undeliverable_reason
        assert bounces.UNDELIVERABLE_FLAG in s.get(Case, case_id).flags

    # Nothing more goes to the address: neither an answer nor a notice.
    set_plan(factory, settings, "coder@clinic.test", "registered", by="test")
    follow, _ = ingest(factory, settings, question_mail(sender="coder@clinic.test", subject="Another one"))
    with factory() as s:
        case = s.get(Case, follow.case_id)
        assert queue_notice(s, settings, case, template="over_quota", context=NOTICE, kind="quota_notice",
                            in_reply_to=None) is None
        s.commit()
    effects = approve(factory, settings, follow.case_id, text="Answer two.", by="c@cc.test")
    status = outbox_send.send_one(factory, settings, effects.outbox_ids[0],
                                  make_transport(settings.smtp_out))
    assert status == "needs_check"
    with factory() as s:
        out = s.get(Outbox, effects.outbox_ids[0])
        assert "marked undeliverable" in out.last_error
        suppressed = s.execute(select(AuditEvent).where(AuditEvent.action == "notice_suppressed")).scalars().all()
        assert [e.detail["why"] for e in suppressed] == ["the address is marked undeliverable"]

    assert bounces.clear_undeliverable(factory, "coder@clinic.test", by="admin")
    assert not bounces.clear_undeliverable(factory, "coder@clinic.test", by="admin")
    outbox_send.resolve(factory, effects.outbox_ids[0], sent=False, by="admin")
    assert outbox_send.send_one(factory, settings, effects.outbox_ids[0],
                                make_transport(settings.smtp_out)) == "sent"
    with factory() as s:
        assert bounces.UNDELIVERABLE_FLAG not in s.get(Case, case_id).flags


def test_soft_bounces_and_forged_bounces_mark_nothing(factory, settings):
    case_id, sent = _answered_case(factory, settings)
    soft, _ = ingest(factory, settings, _dsn(sent, "coder@clinic.test", status="4.2.2", action="delayed"))
    assert soft.rule_hits == ["is_bounce", "is_bounce_of_ours"]
    # A bounce naming an id of our format that we did not sign: ignored.
    forged_raw = sent.replace(b"Message-ID: <cc.", b"Message-ID: <cc.0", 1)
    forged, _ = ingest(factory, settings, _dsn(forged_raw, "coder@clinic.test"))
    assert forged.rule_hits == ["is_bounce"]
    # Another recipient's failure of the same message: not this requester.
    other, _ = ingest(factory, settings, _dsn(sent, "someone-else@clinic.test", returned="text/plain"))
    with factory() as s:
        requester = s.execute(select(Requester).where(Requester.email == "coder@clinic.test")).scalar_one()
        assert requester.undeliverable_at is None
        assert s.get(InboundMail, other.id).disposition == "bounce"


def test_automatic_mail_is_capped_per_address_per_day(factory, settings):
    settings.service.auto_mail_per_address_per_day = 2
    mail, _ = ingest(factory, settings, question_mail())
    with factory() as s:
        case = s.get(Case, mail.case_id)
        ids = [queue_notice(s, settings, case, template="over_quota", context=NOTICE, kind="quota_notice",
                            in_reply_to=None) for _ in range(4)]
        s.commit()
    assert ids[0] and ids[1] and ids[2:] == [None, None]


def test_notices_leave_with_the_null_sender_and_answers_with_ours(factory, settings, smtp_sink):
    mail, _ = ingest(factory, settings, question_mail())
    settings.smtp_out.maildir = ""
    settings.smtp_out.host, settings.smtp_out.port = smtp_sink.host, smtp_sink.port
    with factory() as s:
        notice = queue_notice(s, settings, s.get(Case, mail.case_id), template="over_quota",
                              context=NOTICE, kind="quota_notice", in_reply_to=None)
        s.commit()
    effects = approve(factory, settings, mail.case_id, text="Yes.", by="c@cc.test")
    transport = SmtpTransport(settings.smtp_out)
    for outbox_id in [notice, *effects.outbox_ids]:
        assert outbox_send.send_one(factory, settings, outbox_id, transport) == "sent"
    transport.close()
    assert [m["from"] for m in smtp_sink.messages] == ["<>", settings.service.address]


def test_the_mark_is_shown_and_cleared_on_the_command_line(factory, settings, tmp_path, capsys):
    import json

    from consultant.cli import main as cli
    from tests.helpers import write_config

    _, sent = _answered_case(factory, settings)
    ingest(factory, settings, _dsn(sent, "coder@clinic.test"))
    config = str(write_config(settings, tmp_path / "cc.toml"))
    capsys.readouterr()
    assert cli(["--config", config, "requesters", "show", "coder@clinic.test", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["undeliverable"]
    assert "5.1.1" in shown["reason"] and shown["since"]
    assert cli(["--config", config, "requesters", "show", "coder@clinic.test"]) == 0
    assert "UNDELIVERABLE since" in capsys.readouterr().out
    assert cli(["--config", config, "requesters", "clear-undeliverable", "coder@clinic.test"]) == 0
    assert "mail allowed again" in capsys.readouterr().out
    assert cli(["--config", config, "requesters", "clear-undeliverable", "coder@clinic.test"]) != 0
    assert "not marked undeliverable" in capsys.readouterr().err
    assert cli(["--config", config, "requesters", "show", "coder@clinic.test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["undeliverable"] is None
