"""The whole service on real servers: Dovecot → poller → Celery on Redis → PostgreSQL →
draft → CLI approval → SMTP sink, with the guest quota, the over-quota notice and an upgrade."""

from __future__ import annotations

import json
from contextlib import contextmanager
from email.utils import make_msgid

import pytest
from celery.contrib.testing.worker import start_worker
from imapclient import IMAPClient
from sqlalchemy import select

from consultant.cli import main as cli
from consultant.models import Case
from consultant.runtime import Runtime
from consultant.services import PollerThread
from tests.conftest import make_settings, question_mail
from tests.helpers import write_config
from tests.servers import wait_for


@contextmanager
def running_service(tmp_path, postgres_url, redis_url, imap_server, smtp_sink,  # type: ignore[no-untyped-def]
                    adjust=None):
    """Poller, Celery worker and sender on real servers; ``adjust(settings)`` runs before the
    config file is written (the CLI and the worker read the same settings)."""
    from consultant.db import upgrade
    from workers.app import app, configure

    upgrade(postgres_url)
    settings = make_settings(postgres_url, tmp_path, imap={
        "host": imap_server.host, "port": imap_server.port, "ssl": False, "username": "consult",
        "password": imap_server.users["consult"], "sent_folder": "Sent", "poll_interval": 1,
        "idle_timeout": 5, "max_backoff": 2,
    }, smtp_out={"maildir": "", "host": smtp_sink.host, "port": smtp_sink.port})
    settings.broker.url = redis_url
    if adjust is not None:
        adjust(settings)
    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
        c.login("consult", imap_server.users["consult"])
        for folder in ("INBOX", "Sent"):
            if c.folder_exists(folder):
                c.select_folder(folder)
                c.delete_messages(c.search("ALL"))
                c.expunge()
    configure(settings)
    config = write_config(settings, tmp_path / "cc.toml")
    rt = Runtime(settings)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      shutdown_timeout=10):
        poller = PollerThread(rt, rt.settings.imap).start()
        try:
            yield settings, rt, config
        finally:
            poller.stop()
            rt.dispose()


@pytest.fixture
def service(tmp_path, postgres_url, redis_url, imap_server, smtp_sink):  # type: ignore[no-untyped-def]
    with running_service(tmp_path, postgres_url, redis_url, imap_server, smtp_sink) as running:
        yield running


def append(imap_server, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
        c.login("consult", imap_server.users["consult"])
        c.append("INBOX", raw)


def case_status(rt, case_id):  # type: ignore[no-untyped-def]
    with rt.factory() as s:
        case = s.get(Case, case_id)
        return case.status if case else None


def cli_json(capsys, *args: str):  # type: ignore[no-untyped-def]
    capsys.readouterr()
    assert cli(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_question_to_answer_to_quota(service, imap_server, smtp_sink, capsys):
    settings, rt, config = service
    first_id = make_msgid(domain="clinic.test")
    append(imap_server, question_mail(message_id=first_id))

    def drafted():  # type: ignore[no-untyped-def]
        with rt.factory() as s:
            return s.execute(select(Case.id).where(Case.status == "awaiting_review")).scalar()

    case_id = wait_for(drafted, timeout=30, what="a drafted case")
    shown = cli_json(capsys, "--config", str(config), "cases", "show", str(case_id), "--json")
    assert shown["status"] == "awaiting_review" and shown["message_ids"] == [first_id]
    assert shown["draft"]["template"] and shown["requester"] == "coder@clinic.test"

    answer = config.parent / "answer.txt"
    answer.write_text("No PTP edit pairs 77301 with 77338; both may be reported.\n")
    assert cli(["--config", str(config), "cases", "approve", str(case_id), "--text-file",
                str(answer), "--by", "jane@cc.test"]) == 0
    wait_for(lambda: len(smtp_sink.messages) == 1, timeout=30, what="the answer at the SMTP sink")
    wait_for(lambda: case_status(rt, case_id) == "sent", timeout=10, what="case marked sent")
    [msg] = smtp_sink.parsed()
    assert msg["In-Reply-To"] == first_id and msg["References"] == first_id
    assert msg["Subject"] == f"Re: Can 77301 and 77338 be billed together? [CC-{case_id}]"
    body = msg.get_body(preferencelist=("plain",)).get_content()
    assert "No PTP edit pairs 77301 with 77338" in body
    assert "This answer used 1 of 1 answers on your guest plan; 0 remain." in body
    assert msg.get_body(preferencelist=("html",)) is not None
    shown = cli_json(capsys, "--config", str(config), "cases", "show", str(case_id), "--json")
    assert shown["status"] == "sent" and shown["answers"][0]["message_id"] == msg["Message-ID"]
    assert cli_json(capsys, "--config", str(config), "requesters", "show", "coder@clinic.test",
                    "--json")["answers_remaining"] == 0
    # A copy went to the Sent folder (used to reconcile after a crash).
    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
        c.login("consult", imap_server.users["consult"])
        c.select_folder("Sent")
        assert c.search(["HEADER", "Message-ID", msg["Message-ID"]])

    # A second question from the guest is held, and one notice explains how to register.
    append(imap_server, question_mail(subject="Second: J1885 units for 60 mg?"))
    wait_for(lambda: len(smtp_sink.messages) == 2, timeout=30, what="the over-quota notice")
    notice = smtp_sink.parsed()[1]
    assert notice["Auto-Submitted"] == "auto-replied"
    assert "Register for free" in notice.get_body(preferencelist=("plain",)).get_content()
    held = cli_json(capsys, "--config", str(config), "cases", "list", "--status", "held_quota", "--json")
    assert len(held) == 1
    mails = cli_json(capsys, "--config", str(config), "mail", "list", "--json")
    assert [m["disposition"] for m in mails] == ["case", "held_quota"]

    # Registering releases the held case back to drafting.
    assert cli(["--config", str(config), "requesters", "set-plan", "coder@clinic.test",
                "registered"]) == 0
    wait_for(lambda: case_status(rt, held[0]["id"]) == "awaiting_review", timeout=30,
             what="the held case to be drafted after the upgrade")
    assert cli_json(capsys, "--config", str(config), "requesters", "show", "coder@clinic.test",
                    "--json")["answers_remaining"] == 5
