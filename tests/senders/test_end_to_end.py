"""Sender authenticity end to end, on real servers: through Dovecot and the poller (our MTA's
Authentication-Results), and through our SMTP listener with DKIM checked here against a key
served by a local DNS server; notices and answers arrive at the SMTP sink."""

from __future__ import annotations

import subprocess
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from consultant.cli import main as cli
from consultant.models import Case, InboundMail
from consultant.services import start_smtpd
from tests.conftest import question_mail
from tests.senders.conftest import signed_mail
from tests.servers import free_port, unavailable, wait_for
from tests.test_end_to_end import append, case_status, running_service

OURS = "mx.cc.test"


def body(msg) -> str:  # type: ignore[no-untyped-def]
    return msg.get_body(preferencelist=("plain",)).get_content()


def case_of(rt, message_id: str):  # type: ignore[no-untyped-def]
    with rt.factory() as s:
        return s.execute(select(InboundMail.case_id, InboundMail.disposition)
                         .where(InboundMail.message_id == message_id)).first()


def state(rt) -> str:  # type: ignore[no-untyped-def]
    """What the pipeline did, for a failure message."""
    from consultant.models import Outbox

    with rt.factory() as s:
        mails = [f"mail {m.id} {m.from_addr} {m.disposition} {m.rule_hits}"
                 for m in s.execute(select(InboundMail)).scalars()]
        out = [f"outbox {o.id} {o.kind} {o.status} {o.last_error}"
               for o in s.execute(select(Outbox)).scalars()]
    return "; ".join(mails + out)


def approve(config, case_id: int) -> None:  # type: ignore[no-untyped-def]
    answer = config.parent / f"answer-{case_id}.txt"
    answer.write_text("No PTP edit pairs 77301 with 77338; both may be reported.\n")
    assert cli(["--config", str(config), "cases", "approve", str(case_id), "--text-file",
                str(answer), "--by", "jane@cc.test"]) == 0


def test_imap_spoofed_sender_held_forged_header_ignored_reply_confirms(
        tmp_path, postgres_url, redis_url, imap_server, smtp_sink):  # type: ignore[no-untyped-def]
    def hold(settings):  # type: ignore[no-untyped-def]
        settings.authenticity.policy = "hold"
        settings.authenticity.authserv_id = OURS

    with running_service(tmp_path, postgres_url, redis_url, imap_server, smtp_sink, hold) as (
            settings, rt, config):
        spoofed_id = make_msgid(domain="clinic.test")
        append(imap_server, question_mail(
            message_id=spoofed_id, Authentication_Results=f"{OURS}; spf=fail "
            "smtp.mailfrom=evil.test; dkim=none; dmarc=fail header.from=clinic.test"))
        forged_id = make_msgid(domain="clinic.test")
        append(imap_server, question_mail(
            sender="ann@clinic.test", subject="J1885 units?", message_id=forged_id,
            Authentication_Results="mx.attacker.test; dkim=pass header.d=clinic.test; dmarc=pass"))
        try:
            wait_for(lambda: len(smtp_sink.messages) == 2, timeout=30, what="two notices")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {state(rt)}") from None
        notices = {m["To"]: m for m in smtp_sink.parsed()}
        assert set(notices) == {"coder@clinic.test", "ann@clinic.test"}
        for notice in notices.values():
            assert "If you sent it, simply reply to this message" in body(notice)
        assert notices["coder@clinic.test"]["In-Reply-To"] == spoofed_id
        spoofed_case, disposition = case_of(rt, spoofed_id)
        assert disposition == "held_unverified" and case_status(rt, spoofed_case) == "unverified"
        assert case_of(rt, forged_id)[1] == "held_unverified"

        # The real coder replies to the notice: the case is drafted and can be answered.
        append(imap_server, question_mail(
            subject=f"Re: Can 77301 and 77338 be billed together? [CC-{spoofed_case}]",
            body="Yes, it was me.", In_Reply_To=notices["coder@clinic.test"]["Message-ID"]))
        wait_for(lambda: case_status(rt, spoofed_case) == "awaiting_review", timeout=30,
                 what="the confirmed case to be drafted")
        approve(config, spoofed_case)
        wait_for(lambda: len(smtp_sink.messages) == 3, timeout=30, what="the answer")
        answer = smtp_sink.parsed()[2]
        assert answer["To"] == "coder@clinic.test" and answer["In-Reply-To"] != spoofed_id
        assert "This answer used 1 of 1 answers on your guest plan; 0 remain." in body(answer)
        # Ann never confirmed: her case is still held and nothing was charged to her.
        assert case_status(rt, case_of(rt, forged_id)[0]) == "unverified"


@pytest.fixture
def smtp_listener_service(tmp_path, postgres_url, redis_url, imap_server, smtp_sink, dns_stub):  # type: ignore[no-untyped-def]
    port = free_port()

    def verify_here(settings):  # type: ignore[no-untyped-def]
        settings.authenticity.policy = "hold"
        settings.authenticity.verify_dkim = True
        settings.authenticity.dns_servers = [dns_stub.server]
        settings.smtp_in.host, settings.smtp_in.port = "127.0.0.1", port

    with running_service(tmp_path, postgres_url, redis_url, imap_server, smtp_sink,
                         verify_here) as (settings, rt, config):
        listener = start_smtpd(rt)
        try:
            yield settings, rt, config, port
        finally:
            listener.stop()


def swaks(port: int, raw: bytes, sender: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Deliver ``raw`` to our listener with swaks, a real SMTP client."""
    path = tmp_path / f"{abs(hash(raw))}.eml"
    path.write_bytes(raw)
    try:
        subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--from", sender,
                        "--to", "consult@cc.test", "--data", f"@{path}", "--silent", "2"],
                       check=True, timeout=30)
    except FileNotFoundError:
        unavailable("swaks is needed for the SMTP listener tests (apt-get install swaks)")


def test_smtp_listener_verifies_dkim_with_the_key_from_dns(smtp_listener_service, smtp_sink,
                                                           dkim_key, dns_stub, tmp_path):
    settings, rt, config, port = smtp_listener_service
    signed = signed_mail(dkim_key)
    swaks(port, signed, "coder@clinic.test", tmp_path)

    def drafted():  # type: ignore[no-untyped-def]
        with rt.factory() as s:
            return s.execute(select(Case.id).where(Case.status == "awaiting_review")).scalar()

    def mails() -> str:
        with rt.factory() as s:
            return "; ".join(f"{m.disposition}: {m.disposition_reason}"
                             for m in s.execute(select(InboundMail)).scalars())

    try:
        case_id = wait_for(drafted, timeout=30, what="the signed mail drafted")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; mails: {mails()}") from None
    assert "sel._domainkey.clinic.test" in dns_stub.queries
    with rt.factory() as s:
        mail = s.execute(select(InboundMail).where(InboundMail.case_id == case_id)).scalar_one()
        assert mail.source == "smtp" and mail.rule_hits == ["new_case"]

    # The same question with the body altered after signing: held, one notice.
    tampered = signed_mail(dkim_key, sender="bob@clinic.test").replace(b"Medicare", b"Medicaid")
    swaks(port, tampered, "bob@clinic.test", tmp_path)
    wait_for(lambda: len(smtp_sink.messages) == 1, timeout=30, what="the confirmation notice")
    [notice] = smtp_sink.parsed()
    assert notice["To"] == "bob@clinic.test" and notice["Auto-Submitted"] == "auto-replied"
    with rt.factory() as s:
        held = s.execute(select(InboundMail).where(InboundMail.from_addr == "bob@clinic.test")
                         ).scalar_one()
        assert held.disposition == "held_unverified" and "body hash mismatch" in held.disposition_reason

    approve(config, case_id)
    wait_for(lambda: len(smtp_sink.messages) == 2, timeout=30, what="the answer")
    assert smtp_sink.parsed()[1]["To"] == "coder@clinic.test"
