"""The inbound SMTP listener with real clients (smtplib and swaks)."""

from __future__ import annotations

import shutil
import smtplib
import subprocess

import pytest
from sqlalchemy import select, text

from consultant.intake.smtp import IntakeHandler, start_listener
from consultant.models import InboundMail
from tests.conftest import question_mail
from tests.servers import free_port, unavailable


@pytest.fixture
def listener(settings, factory):  # type: ignore[no-untyped-def]
    enqueued: list[int] = []
    handler = IntakeHandler(factory, {"consult@cc.test"}, enqueued.append, 1_000_000)
    port = free_port()
    controller = start_listener(handler, "127.0.0.1", port)
    yield port, enqueued, handler
    controller.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stores_before_250_and_refuses_unknown_recipients(listener, factory):
    port, enqueued, _ = listener
    raw = question_mail().replace(b"\n", b"\r\n")  # on the wire, as SMTP carries it
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        assert smtp.sendmail("coder@clinic.test", ["consult@cc.test"], raw) == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("coder@clinic.test", ["nobody@cc.test"], raw)
        assert refused.value.recipients["nobody@cc.test"][0] == 550
    with factory() as s:
        [mail] = s.execute(select(InboundMail)).scalars().all()
        assert mail.raw == raw and mail.source == "smtp"  # the exact bytes, not a re-encoding
    assert enqueued == [mail.id]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_answers_451_when_it_cannot_store(listener, factory):
    port, enqueued, _ = listener
    with factory() as s:  # make storage impossible: the table is gone
        s.execute(text("ALTER TABLE inbound_mail RENAME TO inbound_mail_away"))
        s.commit()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as err:
            smtp.sendmail("coder@clinic.test", ["consult@cc.test"], question_mail())
    assert err.value.smtp_code == 451 and enqueued == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_swaks_delivery(listener, factory):
    if shutil.which("swaks") is None:
        unavailable("swaks is not installed (apt-get install swaks)")
    port, enqueued, _ = listener
    result = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--to", "consult@cc.test",
                             "--from", "coder@clinic.test", "--header", "Subject: 99213 with 20610?",
                             "--body", "Can 20610 be billed with 99213?"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 OK stored" in result.stdout
    with factory() as s:
        mail = s.execute(select(InboundMail)).scalar_one()
        assert mail.subject == "99213 with 20610?"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ehlo_announces_the_size_limit_and_sessions_are_bounded(settings, factory):
    handler = IntakeHandler(factory, {"consult@cc.test"}, lambda _id: None, 1_000_000)
    port = free_port()
    controller = start_listener(handler, "127.0.0.1", port, max_sessions=2)
    try:
        first, second = smtplib.SMTP("127.0.0.1", port), smtplib.SMTP("127.0.0.1", port)
        code, _ = first.ehlo("client.test")
        assert code == 250 and first.esmtp_features["size"] == "1000000"
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", port, timeout=5)
        assert refused.value.smtp_code == 421
        first.quit()
        third = smtplib.SMTP("127.0.0.1", port, timeout=5)  # a place is free again
        assert third.noop()[0] == 250
        for client in (second, third):
            client.quit()
        assert controller.sessions.refused == 1
    finally:
        controller.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_slow_store_does_not_stall_other_sessions(listener, settings, factory):
    import sqlite3
    import threading

    port, enqueued, handler = listener
    storing = threading.Event()
    real_store = handler._store

    def store(raw: bytes, recipients: str):  # type: ignore[no-untyped-def]
        storing.set()
        return real_store(raw, recipients)

    handler._store = store
    # Another writer holds the database: the store waits for it, in a worker thread.
    blocker = sqlite3.connect(settings.database.url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN EXCLUSIVE")
    answers: list[object] = []

    def deliver() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            answers.append(smtp.sendmail("coder@clinic.test", ["consult@cc.test"], question_mail()))

    sender = threading.Thread(target=deliver)
    sender.start()
    assert storing.wait(timeout=30)
    try:
        # While that DATA waits for the database, another client is served at once.
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as other:
            assert other.noop()[0] == 250
        assert answers == []  # the first is still waiting for its commit
    finally:
        blocker.rollback()
        blocker.close()
    sender.join(timeout=30)
    assert answers == [{}] and len(enqueued) == 1
