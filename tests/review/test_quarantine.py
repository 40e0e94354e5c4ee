"""Quarantined mail: listed and shown in the console, released into processing or discarded,
from the console and from `caseconsultant mail show|retry|discard`, every decision audited."""

from __future__ import annotations

from sqlalchemy import select

from consultant.cli import main as cli
from consultant.intake.store import Location, store_raw
from consultant.models import AuditEvent, Case, InboundMail
from consultant.processing import process_mail
from tests.conftest import question_mail
from tests.helpers import write_config
from tests.review.conftest import CONSULTANT
from tests.review.test_case_actions import post


def quarantined_mail(console, **mail):  # type: ignore[no-untyped-def]
    """A real question quarantined the real way: too large for the configured limit."""
    raw = question_mail(**mail)
    limit = console.settings.service.max_message_bytes
    console.settings.service.max_message_bytes = 100
    try:
        mail_id = store_raw(console.factory, raw, Location("cli")).mail_id
        process_mail(console.factory, console.settings, mail_id)
    finally:
        console.settings.service.max_message_bytes = limit
    with console.factory() as session:
        assert session.get(InboundMail, mail_id).disposition == "quarantined"
    return mail_id


def test_quarantine_is_listed_shown_and_released_into_a_draft(console):
    mail_id = quarantined_mail(console, sender="big@clinic.test", subject="J1885 units please")
    client = console.logged_in()
    listing = client.get("/quarantine").text
    assert f'data-mail="{mail_id}"' in listing and "message too large" in listing
    assert "1 mail waiting" in listing
    page = client.get(f"/quarantine/{mail_id}").text
    assert "Subject: J1885 units please" in page and "big@clinic.test" in page
    response = post(client, f"/quarantine/{mail_id}/release")
    assert response.status_code == 303 and response.headers["location"].startswith("/cases/")
    with console.factory() as session:
        mail = session.get(InboundMail, mail_id)
        case = session.get(Case, mail.case_id)
        assert mail.disposition == "case" and case.drafts and case.status == "awaiting_review"
        decided, on_case = session.execute(select(AuditEvent).where(
            AuditEvent.action == "mail_released").order_by(AuditEvent.id)).scalars()
        assert decided.actor == CONSULTANT and decided.detail["mail_id"] == mail_id
        assert "too large" in decided.detail["was"]
        assert on_case.case_id == case.id and on_case.detail["became"] == "case"
    assert f'data-mail="{mail_id}"' not in client.get("/quarantine").text
    again = post(client, f"/quarantine/{mail_id}/release")
    assert "is not quarantined" in client.get(again.headers["location"]).text


def test_a_mail_still_bad_is_quarantined_again_with_its_reason(console):
    mail_id = quarantined_mail(console)
    console.settings.service.max_message_bytes = 100
    client = console.logged_in()
    response = post(client, f"/quarantine/{mail_id}/release")
    assert response.headers["location"] == f"/quarantine/{mail_id}"
    assert "quarantined again" in client.get(f"/quarantine/{mail_id}").text


def test_discard_needs_a_reason_and_is_audited(console):
    mail_id = quarantined_mail(console)
    client = console.logged_in()
    post(client, f"/quarantine/{mail_id}/discard", reason="  ")
    with console.factory() as session:
        assert session.get(InboundMail, mail_id).disposition == "quarantined"
    post(client, f"/quarantine/{mail_id}/discard", reason="spam")
    with console.factory() as session:
        mail = session.get(InboundMail, mail_id)
        assert mail.disposition == "discarded" and "spam" in mail.disposition_reason and mail.raw
        [event] = session.execute(select(AuditEvent).where(AuditEvent.action == "mail_discarded")).scalars()
        assert event.detail["reason"] == "spam" and event.actor == CONSULTANT
    assert client.get("/quarantine/999999").status_code == 404


def test_the_cli_shows_retries_and_discards(console, tmp_path, capsys):
    first = quarantined_mail(console, sender="one@clinic.test")
    second = quarantined_mail(console, sender="two@clinic.test")
    third = quarantined_mail(console, sender="three@clinic.test")
    config = str(write_config(console.settings, tmp_path / "cc.toml"))
    assert cli(["--config", config, "mail", "show", str(first)]) == 0
    shown = capsys.readouterr().out
    assert "[quarantined]" in shown and "message too large" in shown and "From: one@clinic.test" in shown
    assert cli(["--config", config, "mail", "discard", str(third), "--reason", "test mail",
                "--by", "ops@cc.test"]) == 0
    assert cli(["--config", config, "mail", "retry", "--all", "--by", "ops@cc.test"]) == 0
    out = capsys.readouterr().out
    assert f"mail {first}: case" in out and f"mail {second}: case" in out and "2 released" in out
    assert cli(["--config", config, "mail", "retry", str(first)]) == 1
    assert "is not quarantined" in capsys.readouterr().err
    with console.factory() as session:
        actors = session.execute(select(AuditEvent.action, AuditEvent.actor).where(
            AuditEvent.action.like("mail_%")).order_by(AuditEvent.id)).all()
    assert actors == [("mail_discarded", "ops@cc.test")] + [("mail_released", "ops@cc.test")] * 4
