"""The service as deployed on several hosts: every component its own process, over Redis and
PostgreSQL — the IMAP poller, the SMTP listener, the console and one worker per queue — with
a worker killed (SIGKILL) while it holds a task.  Every mail must end decided exactly once, and
every approved answer sent exactly once.  Flower, Celery's monitor, is started against the same
broker and must see the three workers.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from imapclient import IMAPClient
from sqlalchemy import func, select

from consultant.db import upgrade
from consultant.models import Case, InboundMail, Outbox
from consultant.runtime import Runtime
from tests.conftest import make_settings, question_mail
from tests.helpers import write_config
from tests.servers import REPO, free_port, wait_for

pytestmark = pytest.mark.slow
MAILS = 12  # half by IMAP, half by SMTP; each from its own guest (one answer each)


class Procs:
    def __init__(self, config: Path, logs: Path) -> None:
        self.config, self.logs = config, logs
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CASECONSULTANT_")}
        self.env["PYTHONPATH"] = str(REPO)
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, cmd: list[str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        argv = cmd or [sys.executable, "-m", "consultant.cli", "--config", str(self.config), *args]
        proc = subprocess.Popen(argv, cwd=self.logs, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]


def cli(procs: Procs, *args: str, stdin: str = "") -> str:
    done = subprocess.run([sys.executable, "-m", "consultant.cli", "--config", str(procs.config), *args],
                          env=procs.env, input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def http(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test server
        return response.status, response.read().decode()


def held_by_broker(client: redis.Redis, queue: str) -> bool:
    """A task of ``queue`` delivered to a worker and not yet acknowledged (running, with
    acks_late and a prefetch of one)."""
    for raw in client.hvals("unacked"):
        message, _exchange, routing_key = json.loads(raw)
        if routing_key == queue:
            return True
    return False


def test_components_as_processes_survive_a_killed_worker(tmp_path, postgres_url, redis_url,
                                                          imap_server, smtp_sink):
    upgrade(postgres_url)
    user = "erin"
    with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
        c.login(user, imap_server.users[user])
        for folder in ("INBOX", "Sent"):
            if c.folder_exists(folder):
                c.select_folder(folder)
                c.delete_messages(c.search("ALL"))
                c.expunge()
    smtp_port, console_port, flower_port = free_port(), free_port(), free_port()
    settings = make_settings(postgres_url, tmp_path, imap={
        "host": imap_server.host, "port": imap_server.port, "ssl": False, "username": user,
        "password": imap_server.users[user], "sent_folder": "Sent", "poll_interval": 1,
        "idle_timeout": 5, "max_backoff": 2,
    }, smtp_out={"maildir": "", "host": smtp_sink.host, "port": smtp_sink.port},
        smtp_in={"port": smtp_port}, console={"port": console_port, "secret_key": "t" * 40},
        workers={"pool": "threads", "intake_concurrency": 1, "drafting_concurrency": 1,
                 "sending_concurrency": 1})
    settings.broker.url = redis_url
    settings.broker.visibility_timeout = 3  # a killed worker's task is handed out again after 3 s
    config = write_config(settings, tmp_path / "cc.toml")
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Procs(config, logs)
    broker = redis.Redis.from_url(redis_url)
    rt = Runtime(settings)
    try:
        procs.start("poll", "poll")
        procs.start("smtpd", "smtpd")
        procs.start("console", "console")
        for queue in ("intake", "drafting", "sending"):
            procs.start(queue, "worker", "--queue", queue)
        flower_env_cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "flower",
                          "--config", str(config), "--address=127.0.0.1", f"--port={flower_port}"]
        procs.env["FLOWER_UNAUTHENTICATED_API"] = "true"
        procs.start("flower", cmd=flower_env_cmd)
        wait_for(lambda: http(f"http://127.0.0.1:{console_port}/healthz")[0] == 200, timeout=60,
                 what="the console")

        senders = [f"guest{i}@clinic.test" for i in range(MAILS)]
        with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
            c.login(user, imap_server.users[user])
            for sender in senders[: MAILS // 2]:
                c.append("INBOX", question_mail(sender=sender, to="consult@cc.test"))
        wait_for(lambda: smtp_listening(smtp_port), timeout=60, what="the SMTP listener")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
            for sender in senders[MAILS // 2:]:
                smtp.sendmail(sender, ["consult@cc.test"], question_mail(sender=sender))

        # Kill the intake worker (it classifies and drafts a new mail) while it holds a task,
        # then start a new one.
        wait_for(lambda: held_by_broker(broker, "intake"), timeout=90, interval=0.005,
                 what="an intake task in a worker's hands")
        procs.running["intake"].send_signal(signal.SIGKILL)
        procs.running["intake"].wait(timeout=10)
        procs.start("intake", "worker", "--queue", "intake")

        def drafted() -> bool:
            with rt.factory() as s:
                undecided = s.execute(select(func.count(InboundMail.id))
                                      .where(InboundMail.disposition.is_(None))).scalar_one()
                waiting = s.execute(select(func.count(Case.id))
                                    .where(Case.status == "awaiting_review")).scalar_one()
                return undecided == 0 and waiting == MAILS
        wait_for(drafted, timeout=180, interval=0.5, what="every mail drafted " + procs.log("intake"))

        # Approve every case through the console's API; the sending worker sends them.
        cli(procs, "users", "add", "lead@cc.test", "--role", "admin", stdin="pw-" + "x" * 20 + "\n")
        token = cli(procs, "users", "token", "lead@cc.test").strip()
        with rt.factory() as s:
            case_ids = s.execute(select(Case.id).order_by(Case.id)).scalars().all()
        for case_id in case_ids:
            status, _ = http(f"http://127.0.0.1:{console_port}/api/v1/cases/{case_id}/approve",
                             token, {"text": f"Answer to case {case_id}."})
            assert status == 200
        wait_for(lambda: len(smtp_sink.messages) >= MAILS, timeout=120, interval=0.5,
                 what="every answer sent " + procs.log("sending"))

        # Flower sees one worker per queue.
        status, body = http(f"http://127.0.0.1:{flower_port}/api/workers?refresh=1")
        names = sorted(name.split("@")[0] for name in json.loads(body))
        assert {"intake", "drafting", "sending"} <= set(names), names
        time.sleep(2)  # nothing more may arrive
    finally:
        procs.stop_all()
        broker.close()

    with rt.factory() as s:
        mails = s.execute(select(InboundMail)).scalars().all()
        assert len(mails) == MAILS  # nothing lost, nothing stored twice
        assert sorted(m.disposition for m in mails) == ["case"] * MAILS  # each decided once
        assert s.execute(select(func.count(Case.id))).scalar_one() == MAILS
        sent = s.execute(select(Outbox).where(Outbox.kind == "answer")).scalars().all()
        assert sorted(o.status for o in sent) == ["sent"] * MAILS
    recipients = sorted(rcpt for m in smtp_sink.messages for rcpt in m["to"])
    assert recipients == sorted(senders)  # every answer sent exactly once
    rt.dispose()


def smtp_listening(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as smtp:
            return smtp.noop()[0] == 250
    except OSError:
        return False
