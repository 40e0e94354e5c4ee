"""Processes killed with SIGKILL at the worst moments: no mail lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from consultant.cli import main as cli
from consultant.db import upgrade
from consultant.intake.imap import PROCESSED_FLAG, ImapPoller
from consultant.intake.store import Location, store_raw
from consultant.models import Case, InboundMail, Outbox
from consultant.processing import process_mail
from consultant.review.actions import approve
from consultant.runtime import Runtime
from tests.conftest import make_settings, question_mail
from tests.helpers import write_config
from tests.servers import REPO, empty_mailbox, wait_for

pytestmark = pytest.mark.slow


def run_crash(*args: str, timeout: float = 60) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tests.crash_scripts", *args], cwd=REPO, env=env,
                          timeout=timeout, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, f"expected SIGKILL, got {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.returncode


@pytest.fixture
def env(tmp_path, postgres_url, redis_url, imap_server, smtp_sink):  # type: ignore[no-untyped-def]
    upgrade(postgres_url)
    user = "frank"
    empty_mailbox(imap_server, user)
    settings = make_settings(postgres_url, tmp_path, imap={
        "host": imap_server.host, "port": imap_server.port, "ssl": False, "username": user,
        "password": imap_server.users[user], "sent_folder": "Sent"},
        smtp_out={"maildir": "", "host": smtp_sink.host, "port": smtp_sink.port})
    settings.broker.url = redis_url
    settings.broker.visibility_timeout = 3
    config = write_config(settings, tmp_path / "cc.toml")
    rt = Runtime(settings)
    yield settings, rt, config, user
    rt.dispose()
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # no stale tasks for later tests


def test_poller_killed_between_commit_and_flag(env, imap_server):
    settings, rt, config, user = env
    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
        c.login(user, imap_server.users[user])
        c.append("INBOX", question_mail(subject="first"))
        c.append("INBOX", question_mail(subject="second"))
    run_crash("poller_before_flag", str(config))
    with rt.factory() as s:
        assert s.execute(select(func.count(InboundMail.id))).scalar_one() == 2  # stored, committed
    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
        c.login(user, imap_server.users[user])
        c.select_folder("INBOX")
        assert c.search(["KEYWORD", PROCESSED_FLAG.decode()]) == []  # killed before flagging
    enqueued: list[int] = []
    poller = ImapPoller(settings.imap, rt.factory, enqueued.append, settings.service.max_message_bytes)
    result = poller.poll_once()
    poller.disconnect()
    assert (result.fetched, result.stored) == (2, 0)  # the stored ones are recognised, not doubled
    assert len(enqueued) == 2  # re-enqueued because they were never processed
    for mail_id in enqueued:
        process_mail(rt.factory, settings, mail_id)
    with rt.factory() as s:
        assert s.execute(select(func.count(InboundMail.id))).scalar_one() == 2
        statuses = sorted(c.status for c in s.execute(select(Case)).scalars())
        assert statuses == ["awaiting_review", "held_quota"]  # one case per mail; guest's 2nd held
        assert sorted(m.disposition for m in s.execute(select(InboundMail)).scalars()) == ["case", "held_quota"]
    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
        c.login(user, imap_server.users[user])
        c.select_folder("INBOX")
        assert len(c.search(["KEYWORD", PROCESSED_FLAG.decode()])) == 2


def test_worker_killed_mid_task_then_redelivered(env, tmp_path):
    settings, rt, config, _ = env
    from workers.app import configure
    from workers.tasks import process_mail as process_task

    configure(settings)
    stored = store_raw(rt.factory, question_mail(), Location("cli"))
    process_task.delay(stored.mail_id)
    marker = tmp_path / "killed"
    run_crash("worker_mid_case", str(config), str(marker))
    assert marker.exists()
    with rt.factory() as s:
        assert s.get(InboundMail, stored.mail_id).disposition is None
        assert s.execute(select(func.count(Case.id))).scalar_one() == 0  # rolled back
    # A worker started the way users start one picks the unacknowledged task up again.
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool=solo",
         "-Q", "intake,drafting,sending", "--loglevel=WARNING", "--without-heartbeat", "--without-mingle",
         "--without-gossip"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO),
                                              "CASECONSULTANT_CONFIG": str(config)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def done():  # type: ignore[no-untyped-def]
            with rt.factory() as s:
                return s.get(InboundMail, stored.mail_id).disposition
        assert wait_for(done, timeout=60, what="the redelivered task") == "case"
        with rt.factory() as s:
            assert s.execute(select(func.count(Case.id))).scalar_one() == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)


def approved(rt, settings):  # type: ignore[no-untyped-def]
    stored = store_raw(rt.factory, question_mail(), Location("cli"))
    process_mail(rt.factory, settings, stored.mail_id)
    with rt.factory() as s:
        case_id = s.execute(select(Case.id)).scalar_one()
    return case_id, approve(rt.factory, settings, case_id, text="Answer.", by="c@cc.test").outbox_ids[0]


def test_sender_killed_after_smtp_accepted_goes_to_a_human(env, smtp_sink, capsys):
    settings, rt, config, _ = env
    case_id, outbox_id = approved(rt, settings)
    run_crash("sender_after_accept", str(config), str(outbox_id))
    assert len(smtp_sink.messages) == 1
    assert cli(["--config", str(config), "send-pending"]) == 0
    assert "needs a human check 1" in capsys.readouterr().out
    with rt.factory() as s:
        assert s.get(Outbox, outbox_id).status == "needs_check"
    assert cli(["--config", str(config), "send-pending"]) == 0  # nothing is re-sent
    assert len(smtp_sink.messages) == 1
    assert cli(["--config", str(config), "outbox", "resolve", str(outbox_id), "--sent"]) == 0
    with rt.factory() as s:
        assert s.get(Case, case_id).status == "sent"


def test_sender_killed_before_recording_is_reconciled_from_sent_folder(env, smtp_sink, capsys):
    settings, rt, config, _ = env
    case_id, outbox_id = approved(rt, settings)
    run_crash("sender_before_record", str(config), str(outbox_id))
    assert len(smtp_sink.messages) == 1
    assert cli(["--config", str(config), "send-pending"]) == 0
    assert "reconciled as sent 1" in capsys.readouterr().out
    with rt.factory() as s:
        assert s.get(Outbox, outbox_id).status == "sent"
        assert s.get(Case, case_id).status == "sent"
    assert len(smtp_sink.messages) == 1
