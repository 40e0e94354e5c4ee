"""The chaos run: the real service as separate processes, killed and restarted at random.

Components, each its own process group so SIGKILL takes the whole of it (Celery's pool too):
a private ``redis-server`` (the broker; killing the shared one would hurt other tests), the
IMAP poller (``caseconsultant poll``), a Celery worker (``caseconsultant worker``), the
sender (``tests.chaos.sender``: the sweeper loop that reconciles and sends due answers), and
the SMTP listener (``caseconsultant smtpd``, not killed: its clients would only retry).  The
test process APPENDs mails to Dovecot and sends mails to the listener, approves every case
that waits for review (as a consultant would), kills one component every few hundred
milliseconds and restarts it, and cuts every PostgreSQL connection of the database now and
then.  Afterwards everything runs undisturbed until the work settles, and the counts are
checked: one disposition per mail, one case per case-mail, one answer per approved case.
"""

from __future__ import annotations

import os
import random
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import psycopg
import redis
from imapclient import IMAPClient
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from consultant.models import AWAITING_REVIEW, NEEDS_INFO, Case, InboundMail, Outbox
from consultant.review.actions import ActionError, approve
from consultant.runtime import Runtime
from tests.servers import REPO, free_port, wait_for

REDIS_BINARY = "redis-server"


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0
    log: Path | None = None

    def start(self) -> None:
        assert self.log is not None
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child, closed with it
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def kill(self) -> None:
        """SIGKILL the component's whole process group (it was started in its own session)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None
        self.kills += 1

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        self.proc = None


@dataclass
class Figures:
    mails_sent: int = 0
    smtp_retries: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    pg_cuts: int = 0
    approvals: int = 0
    approve_errors: int = 0
    seconds: float = 0.0
    settle_seconds: float = 0.0

    def report(self, outcome: dict[str, object]) -> str:
        return "\n".join([
            f"chaos: {self.mails_sent} mails in ({self.smtp_retries} SMTP retries), "
            f"{self.seconds:.0f} s of chaos + {self.settle_seconds:.0f} s to settle",
            f"  SIGKILLs: {dict(self.kills)}; PostgreSQL connection cuts: {self.pg_cuts}",
            f"  approvals: {self.approvals} ({self.approve_errors} interrupted and retried)",
            *(f"  {key}: {value}" for key, value in outcome.items())])


def question(i: int, via: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Coder {i} <coder{i}.{via}@clinic.test>"
    msg["To"] = "consult@cc.test"
    msg["Subject"] = f"Chaos question {via} {i}: 77301 and 77338"
    msg["Message-ID"] = make_msgid(idstring=f"chaos{via}{i}", domain="clinic.test")
    msg.set_content(f"Question {i}: can 77301 and 77338 be billed the same day? Medicare.")
    return msg.as_bytes()


class Chaos:
    def __init__(self, rt: Runtime, config: Path, pg_url: str, imap: tuple[str, int, str, str],
                 redis_port: int, smtp_port: int, workdir: Path, seed: int) -> None:
        self.rt, self.config, self.pg_url = rt, config, pg_url
        self.imap, self.redis_port, self.smtp_port = imap, redis_port, smtp_port
        self.random = random.Random(seed)
        self.figures = Figures()
        self.stop_chaos = threading.Event()
        self.lock = threading.Lock()  # a component is not restarted while being killed
        env = {**os.environ, "PYTHONPATH": str(REPO), "CASECONSULTANT_CONFIG": str(config)}
        cli = [sys.executable, "-m", "consultant.cli", "--config", str(config)]
        redis_dir = tempfile.mkdtemp(prefix="cc-chaos-redis-", dir=workdir)
        self.components = {
            "redis": Component("redis", [REDIS_BINARY, "--port", str(redis_port), "--bind",
                                         "127.0.0.1", "--save", "", "--appendonly", "no",
                                         "--dir", redis_dir], env),
            "smtpd": Component("smtpd", [*cli, "smtpd"], env),
            "poller": Component("poller", [*cli, "poll"], env),
            "worker": Component("worker", [*cli, "worker"], env),
            "sender": Component("sender", [sys.executable, "-m", "tests.chaos.sender", str(config)], env),
        }
        for component in self.components.values():
            component.log = workdir / f"{component.name}.log"

    # -- the service ------------------------------------------------------------------------
    def start_all(self) -> None:
        for component in self.components.values():
            component.start()
        wait_for(lambda: redis.Redis(port=self.redis_port).ping(), what="chaos redis")
        wait_for(lambda: _smtp_ready(self.smtp_port), timeout=60, what="chaos SMTP listener")

    def stop_all(self) -> None:
        for component in reversed(list(self.components.values())):
            component.stop()

    def ensure_running(self) -> None:
        with self.lock:
            for component in self.components.values():
                if component.proc is None or component.proc.poll() is not None:
                    component.proc = None
                    component.start()

    # -- what happens to it -----------------------------------------------------------------
    def killer(self, victims: tuple[str, ...] = ("poller", "worker", "sender", "redis")) -> None:
        while not self.stop_chaos.wait(self.random.uniform(0.3, 2.0)):
            choice = self.random.choice([*victims, "postgres"])
            if choice == "postgres":
                self.cut_pg_connections()
                continue
            with self.lock:
                component = self.components[choice]
                component.kill()
                self.figures.kills[choice] += 1
            time.sleep(self.random.uniform(0.0, 1.5))
            with self.lock:
                component.start()

    def cut_pg_connections(self) -> None:
        dbname = self.pg_url.rsplit("/", 1)[1].split("?")[0]
        admin = self.pg_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
        self.figures.pg_cuts += 1

    def feed_imap(self, count: int) -> None:
        host, port, user, password = self.imap
        with IMAPClient(host, port=port, ssl=False) as client:
            client.login(user, password)
            for i in range(count):
                client.append("INBOX", question(i, "imap"))
                with self.lock:
                    self.figures.mails_sent += 1
                time.sleep(self.random.uniform(0, 0.05))

    def feed_smtp(self, count: int) -> None:
        for i in range(count):
            raw = question(i, "smtp")
            for _attempt in range(200):
                try:
                    with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as smtp:
                        smtp.sendmail(f"coder{i}.smtp@clinic.test", ["consult@cc.test"], raw)
                    break
                except (OSError, smtplib.SMTPException):
                    # 451 (could not store: PostgreSQL cut) or a refused connection: the
                    # sending MTA's job is to retry, so we retry.
                    self.figures.smtp_retries += 1
                    time.sleep(0.2)
            else:
                raise AssertionError(f"SMTP listener never accepted mail {i}")
            with self.lock:
                self.figures.mails_sent += 1
            time.sleep(self.random.uniform(0, 0.05))

    def approve_waiting(self) -> int:
        """Approve every case waiting for review (each approval is one transaction).

        The answers are not enqueued from here: the sender process's sweep sends due rows every
        second.  (Configuring the Celery app of the test process for the chaos Redis would leave
        it pointing at a dead broker for every later test in the same run.)
        """
        try:
            with self.rt.factory() as session:
                waiting = session.execute(select(Case.id).where(
                    Case.status.in_((AWAITING_REVIEW, NEEDS_INFO)))).scalars().all()
        except SQLAlchemyError:
            self.figures.approve_errors += 1
            return 0
        done = 0
        for case_id in waiting:
            try:
                effects = approve(self.rt.factory, self.rt.settings, case_id,
                                  text=f"Answer to case {case_id}.", by="chaos@cc.test", kind="answer")
            except ActionError:
                continue  # approved meanwhile, or held
            except SQLAlchemyError:
                self.figures.approve_errors += 1  # connection cut: rolled back, retried later
                continue
            self.figures.approvals += 1
            done += 1
            assert effects.outbox_ids  # an approved answer is queued in the outbox
        return done

    def approver(self) -> None:
        while not self.stop_chaos.wait(0.5):
            self.approve_waiting()

    # -- the end ----------------------------------------------------------------------------
    def settled(self, expected_mails: int) -> bool:
        self.ensure_running()
        self.approve_waiting()
        try:
            with self.rt.factory() as session:
                mails = session.execute(select(func.count(InboundMail.id))).scalar_one()
                open_mails = session.execute(select(func.count(InboundMail.id)).where(
                    InboundMail.disposition.is_(None))).scalar_one()
                waiting = session.execute(select(func.count(Case.id)).where(
                    Case.status.in_((AWAITING_REVIEW, NEEDS_INFO, "approved")))).scalar_one()
                pending = session.execute(select(func.count(Outbox.id)).where(
                    Outbox.status.in_(("pending", "sending")))).scalar_one()
        except SQLAlchemyError:
            return False
        return mails >= expected_mails and open_mails == 0 and waiting == 0 and pending == 0


def _smtp_ready(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as smtp:
            smtp.noop()
        return True
    except (OSError, smtplib.SMTPException):
        return False


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)
