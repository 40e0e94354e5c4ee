"""Retention: raw mail purged after the period (a controllable clock), the redacted case kept."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from consultant.audit.verify import verify
from consultant.cli import main
from consultant.intake.store import Location, store_raw
from consultant.models import AuditEvent, Case, InboundMail, utcnow
from consultant.privacy.retention import purge
from consultant.processing import process_mail
from consultant.review.web.mailview import thread
from tests.conftest import question_mail


def _mail(factory, settings, body: str, process: bool = True) -> int:  # type: ignore[no-untyped-def]
    stored = store_raw(factory, question_mail(body=body), Location("cli"))
    if process:
        process_mail(factory, settings, stored.mail_id)
    return stored.mail_id


def test_raw_mail_is_purged_after_the_retention_period_and_the_case_stays(factory, settings):
    mail_id = _mail(factory, settings, "Patient: Ann Lee. DOS 2026-05-01. Can 77301 and 77338 be billed?")
    waiting = _mail(factory, settings, "Can 20610 and 99214 be billed together? DOS 2026-05-01.",
                    process=False)
    now = utcnow()
    # Day 29: nothing is due.
    assert purge(factory, settings.privacy, now=now + timedelta(days=29)).mails == 0
    # Day 31: the processed mail's raw copy goes; the mail still waiting for processing stays.
    result = purge(factory, settings.privacy, now=now + timedelta(days=31))
    assert result.mails == 1
    with factory() as s:
        mail = s.get(InboundMail, mail_id)
        assert mail.raw is None and mail.raw_purged_at is not None
        assert s.get(InboundMail, waiting).raw is not None
        case = s.get(Case, mail.case_id)
        assert case.subject and case.drafts and case.redaction["counts"] == {"name": 1}
        # The console still shows the case, saying why the original is gone.
        items = thread(case)
        assert "purged after the retention period" in items[0].note
        purged = s.execute(select(AuditEvent).where(AuditEvent.action == "purged")).scalar_one()
        assert purged.detail["mail_ids"] == [mail_id] and purged.case_id == case.id
        raw_column = s.execute(text("SELECT raw FROM inbound_mail WHERE id = :i"), {"i": mail_id}).scalar()
        assert raw_column is None
    # Running it again purges nothing more; the audit chain records it all.
    assert purge(factory, settings.privacy, now=now + timedelta(days=31)).mails == 0
    assert verify(factory).ok


def test_the_period_is_configurable_and_audit_events_are_kept_six_years(factory, settings):
    _mail(factory, settings, "Can 77301 and 77338 be billed together? DOS 2026-05-01.")
    settings.privacy.retention_days = 7
    now = utcnow()
    assert purge(factory, settings.privacy, now=now + timedelta(days=8)).mails == 1
    assert purge(factory, settings.privacy, now=now + timedelta(days=365 * 5)).audit_events == 0
    pruned = purge(factory, settings.privacy, now=now + timedelta(days=2193)).audit_events
    assert pruned >= 3  # received, drafted, purged …
    assert verify(factory).ok


def test_caseconsultant_purge(factory, settings, tmp_path, capsys):
    _mail(factory, settings, "Can 77301 and 77338 be billed together? DOS 2026-05-01.")
    config = tmp_path / "cc.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n'
                      f'[privacy]\nraw_mail_keys = ["{settings.privacy.raw_mail_keys[0].get_secret_value()}"]\n'
                      "retention_days = 0\n")
    assert main(["--config", str(config), "purge", "--dry-run"]) == 0
    assert "would purge the raw copy of 1 mail(s)" in capsys.readouterr().out
    assert main(["--config", str(config), "purge"]) == 0
    assert "purged the raw copy of 1 mail(s)" in capsys.readouterr().out
