"""What every benchmark shares: figures, the servers (started like the tests start them), the
pipeline's settings, the mail corpus, IMAP helpers and synthetic question mails."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from imapclient import IMAPClient

from consultant.settings import Settings, load_settings

log = logging.getLogger("bench")
# Set by ``--py-spy DIR``: every pipeline's worker processes are sampled into DIR.
PROFILE_DIR: Path | None = None
_profiles = 0
REPO = Path(__file__).resolve().parent.parent
IMAP_USERS = ["ingest", "latency", "baseline", "scale"]


# --- figures ---------------------------------------------------------------------------------
@dataclass
class Figure:
    """One printed line: a measured value beside the ceiling it is compared with.

    ``higher_is_better`` orients the ratio so that 1.0 means "as good as the ceiling" for rates
    (value / ceiling) and for times (ceiling / value) alike.
    """

    name: str
    value: float | None
    unit: str
    ceiling: float | None = None
    higher_is_better: bool = True
    note: str = ""
    fixed_ratio: float | None = None  # a ratio computed by the figure's own module

    @property
    def ratio(self) -> float | None:
        if self.fixed_ratio is not None:
            return self.fixed_ratio
        if self.value is None or self.ceiling is None or not self.value or not self.ceiling:
            return None
        return self.value / self.ceiling if self.higher_is_better else self.ceiling / self.value

    def as_json(self) -> dict[str, object]:
        ratio = self.ratio
        return {"name": self.name, "value": _round(self.value), "unit": self.unit,
                "ceiling": _round(self.ceiling),
                "ratio": None if ratio is None else round(ratio, 3)}


def _round(x: float | None) -> float | None:
    if x is None:
        return None
    return round(x, 4 if abs(x) < 10 else 1)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (what p95 of a latency list usually means)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- sizes -------------------------------------------------------------------------------
@dataclass
class Sizes:
    """How much each benchmark does; ``--quick`` shrinks everything."""

    quick: bool = False
    corpus_limit: int = 0  # 0: every corpus mail
    rates: list[int] = field(default_factory=lambda: [5, 20, 50])
    # Seconds of arrivals per latency rate, and per capacity step (``long_sizes``: 60 each).
    latency_seconds: float = 15.0
    capacity_rates: list[int] = field(default_factory=lambda: [10, 25, 50, 75, 100, 125, 150])
    capacity_seconds: float = 15.0
    scale_latency_seconds: float = 10.0
    queue_tasks: int = 2000
    send_messages: int = 1000
    case_sizes: list[int] = field(default_factory=lambda: [1_000, 100_000])
    mailbox_sizes: list[int] = field(default_factory=lambda: [1_000, 50_000])
    scale_batch: int = 200  # question mails ingested on top of each stored-cases size
    new_mails: int = 10  # new mails polled on top of each mailbox size

    @classmethod
    def quick_sizes(cls) -> Sizes:
        return cls(quick=True, corpus_limit=0, rates=[5, 20, 50], latency_seconds=4.0,
                   capacity_rates=[10, 25, 50, 100], capacity_seconds=4.0,
                   scale_latency_seconds=4.0, queue_tasks=500, send_messages=300,
                   case_sizes=[1_000, 10_000], mailbox_sizes=[1_000, 10_000], scale_batch=100,
                   new_mails=10)

    @classmethod
    def long_sizes(cls) -> Sizes:
        """Sustained load as the capacity goal means it: 60 s per rate and per step."""
        return cls(latency_seconds=60.0, capacity_seconds=60.0)


# --- servers -----------------------------------------------------------------------------
class Unavailable(Exception):
    """A server the benchmark needs cannot be started."""


@contextmanager
def _servers_module() -> Iterator[object]:
    """``tests.servers`` skips (pytest.skip) when a server is missing; here that is an error."""
    from tests import servers

    try:
        yield servers
    except BaseException as exc:  # pytest's Skipped/Failed derive from BaseException
        if type(exc).__name__ in {"Skipped", "Failed"}:
            raise Unavailable(str(exc)) from None
        raise


class Env:
    """Redis, PostgreSQL and Dovecot for the whole run; fresh databases on demand."""

    def __init__(self) -> None:
        self.stops: list[Callable[[], None]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="cc-bench-"))
        with _servers_module() as servers:
            self.servers = servers
            redis = servers.start_redis()  # type: ignore[attr-defined]
            self.stops.append(redis.stop)
            self.redis_root = redis.url
            self.redis_url = servers.redis_db_url(redis.url)  # type: ignore[attr-defined]
            pg = servers.start_postgres()  # type: ignore[attr-defined]
            self.stops.append(pg.stop)
            self.pg_admin_url = pg.url
            try:
                self.imap = servers.start_dovecot(IMAP_USERS)  # type: ignore[attr-defined]
            except FileNotFoundError:
                raise Unavailable("no Dovecot: apt-get install dovecot-imapd "
                                  "(pymap breaks on the corpus; see TESTING.md)") from None
            self.stops.append(self.imap.stop)
        self.drops: list[Callable[[], None]] = []

    def new_database(self) -> str:
        """A fresh PostgreSQL database with the current schema."""
        from consultant.db import upgrade

        url, drop = self.servers.fresh_pg_database(self.pg_admin_url)  # type: ignore[attr-defined]
        self.drops.append(drop)
        upgrade(url)
        return url

    def settings(self, db_url: str, user: str, **sections: dict[str, object]) -> Settings:
        """The pipeline's settings for one benchmark: Redis broker, PostgreSQL, Dovecot user."""
        settings = load_settings(environ={})
        settings.database.url = db_url
        settings.broker.url = self.redis_url
        settings.service.address = "consult@cc.test"
        settings.smtp_out.maildir = str(self.tmp / "outbox-maildir")
        # Raw mail is encrypted at rest: a key file of this run's own (created on first use).
        settings.privacy.key_file = str(self.tmp / "raw-mail.keys")
        # Quota holds would turn questions into held cases with notices: not what is measured.
        settings.quota.guest = 1_000_000
        imap = settings.imap
        imap.host, imap.port, imap.ssl = self.imap.host, self.imap.port, False
        imap.username, imap.password = user, self.imap.users[user]
        imap.poll_interval, imap.idle_timeout, imap.max_backoff = 1, 2, 2
        for section, values in sections.items():
            for key, value in values.items():
                setattr(getattr(settings, section), key, value)
        return settings

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.set("caseconsultant:test-run", str(os.getpid()), ex=3600)
        client.close()

    def maildir(self, user: str) -> Path:
        return Path(self.imap.tmp or "", "home", user, "Maildir")

    def close(self) -> None:
        for drop in reversed(self.drops):
            try:
                drop()
            except Exception as exc:  # noqa: BLE001
                log.warning("could not drop a bench database: %s", exc)
        for stop in reversed(self.stops):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("could not stop a server: %s", exc)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- IMAP --------------------------------------------------------------------------------
def imap_client(env: Env, user: str) -> IMAPClient:
    """A logged-in client with TCP_NODELAY (APPEND otherwise stalls ~45 ms: Nagle + delayed ACK)."""
    client = IMAPClient(env.imap.host, port=env.imap.port, ssl=False, timeout=60)
    client._imap.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.login(user, env.imap.users[user])
    return client


def empty_folder(env: Env, user: str, folder: str = "INBOX") -> None:
    with imap_client(env, user) as c:
        if c.folder_exists(folder):
            c.select_folder(folder)
            uids = c.search("ALL")
            if uids:
                c.delete_messages(uids)
                c.expunge()


# --- corpus ------------------------------------------------------------------------------
def corpus_dir() -> Path | None:
    env = os.environ.get("CASECONSULTANT_SHARED")
    root = Path(env) if env else REPO.parent / "shared"
    path = root / "corpus" / "mail"
    return path if path.is_dir() else None


def load_corpus(limit: int = 0) -> list[tuple[str, bytes]]:
    """(relative path, bytes) of every mail listed in INDEX.tsv, in index order."""
    root = corpus_dir()
    if root is None:
        raise Unavailable("the mail corpus (../shared/corpus/mail or $CASECONSULTANT_SHARED) is missing")
    lines = (root / "INDEX.tsv").read_text(encoding="utf-8").splitlines()[1:]
    paths = [line.split("\t", 1)[0] for line in lines if line.strip()]
    if limit:
        paths = paths[:limit]
    return [(p, (root / p).read_bytes()) for p in paths]


# --- synthetic questions -------------------------------------------------------------------
QUESTIONS = [
    ("Can 77301 and 77338 be billed together?",
     "Medicare, hospital outpatient, DOS 2025-03-04. Can 77301 and 77338 be billed the same day?"),
    ("J1885 units for Toradol 60 mg IM",
     "Commercial payer, DOS 2025-02-11. Toradol 60 mg IM was given; how many units of J1885?"),
    ("Modifier for 99213 with 20610",
     "Medicare, DOS 2025-01-20. Office visit 99213 and a knee injection 20610 the same day: "
     "do we need modifier 25 on the E/M?"),
    ("ICD-10 for type 2 diabetes with hyperglycemia",
     "What is the right code for type 2 diabetes mellitus with hyperglycemia? Is E11.65 correct, "
     "and can it go with Z79.4?"),
    ("MUE for 96372",
     "Medicare, DOS 2025-04-02. How many units of 96372 can we bill per day before the MUE?"),
    ("Which code for a screening colonoscopy?",
     "Is G0121 or 45378 right for a screening colonoscopy on a patient not at high risk?"),
]


def question_mail(n: int, *, sender: str | None = None, tag: str = "bench") -> tuple[str, bytes]:
    """A question mail (Message-ID, bytes) from a distinct sender per ``n`` unless given."""
    subject, body = QUESTIONS[n % len(QUESTIONS)]
    msg = EmailMessage()
    msg["From"] = sender or f"Coder {n} <coder{n}@{tag}.clinic.test>"
    msg["To"] = "consult@cc.test"
    msg["Subject"] = subject
    message_id = f"<{tag}.{n}.{time.time_ns()}@clinic.test>"
    msg["Message-ID"] = message_id
    msg["Date"] = "Tue, 04 Mar 2025 10:00:00 +0000"
    msg.set_content(f"Hello,\n\n{body}\n\nThanks,\nCoder {n}\n")
    return message_id, msg.as_bytes()


# --- the pipeline, in-process like `caseconsultant run` ----------------------------------
def _die_with_parent() -> None:
    """In a bench worker process: end it when the bench process dies (even by SIGKILL or a
    test's timeout), so no orphan goes on taking tasks from the bench's Redis database."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG



@contextmanager
def pipeline(settings: Settings, *, poller: bool = True, workers: int = 2,
             threads: bool = False, include: tuple[str, ...] = (),
             enqueue: Callable[[int], None] | None = None) -> Iterator[object]:
    """The pipeline as it is deployed: ``workers`` Celery worker *processes* (``caseconsultant
    worker`` / ``celery -A workers.app worker``; separate processes, so they use both cores
    instead of sharing one interpreter lock), and the IMAP poller in this process.

    ``threads=True``: one in-process worker with ``workers`` threads instead (as ``run``
    starts it), for measurements that count tasks with in-process Celery signals or use tasks
    defined only in this process.  ``include``: more task modules for the worker processes
    (``bench.tasks``); ``enqueue``: what the poller hands each stored mail to (default: the
    product's ``process_mail`` task)."""
    if threads:
        from consultant.services import WorkerThread

        worker = WorkerThread(settings, concurrency=workers).start()
        try:
            with pipeline(settings, poller=poller, workers=0, enqueue=enqueue) as rt:
                yield rt
        finally:
            worker.stop()
        return
    import subprocess
    import sys
    import tempfile

    from consultant.runtime import Runtime
    from consultant.services import start_pollers
    from tests.helpers import write_config
    from workers.app import app, configure

    configure(settings)
    rt = Runtime(settings)
    tmp = tempfile.mkdtemp(prefix="cc-bench-")
    config = write_config(settings, Path(tmp) / "bench.toml")
    env = {**os.environ, "CASECONSULTANT_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    procs: list[subprocess.Popen[bytes]] = []
    recorder = None
    stops: list[Callable[[], None]] = []
    # Everything started from here on is stopped in the finally: a worker process left behind
    # by a failed start keeps consuming this Redis database's queues with its old settings,
    # and takes the tasks of every later run on it.
    try:
        procs += [subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool=solo",
             "-Q", "intake,drafting,sending", "--loglevel=WARNING", "--without-heartbeat",
             "--without-mingle", "--without-gossip", "-n", f"bench{i}@%h",
             *([f"--include={','.join(include)}"] if include else [])], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            for i in range(workers)]
        if procs:
            if not wait_until(lambda: len(app.control.ping(timeout=0.5) or []) >= len(procs),
                              timeout=60):
                raise RuntimeError(f"{len(procs)} bench worker processes did not answer in 60 s")
        if PROFILE_DIR is not None and procs:
            from bench.pyspy import Recorder

            global _profiles
            _profiles += 1
            recorder = Recorder(PROFILE_DIR, [p.pid for p in procs], f"pipeline{_profiles}")
        stops = (start_pollers(rt, enqueue) if enqueue else start_pollers(rt)) if poller else []
        yield rt
    finally:
        if recorder is not None:
            recorder.stop()
        for stop in stops:
            stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        rt.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def floor_pipeline(settings: Settings, *, workers: int = 2) -> Iterator[object]:
    """:func:`pipeline` with ``bench.floor_mail`` in place of ``process_mail``: the pipeline's
    fixed shape alone.  The floor's one requester is made before anything starts, since the
    poller hands out mails already in the mailbox at once."""
    from sqlalchemy.orm import Session

    from bench.tasks import FLOOR_SENDER, floor_mail
    from consultant.db import make_engine
    from consultant.models import Requester

    engine = make_engine(settings.database.url)
    with Session(engine) as session, session.begin():
        session.add(Requester(email=FLOOR_SENDER, name="floor"))
    engine.dispose()
    with pipeline(settings, workers=workers, include=("bench.tasks",),
                  enqueue=lambda mail_id: floor_mail.delay(mail_id)) as rt:
        yield rt


# The servers' processes, by name (pg_ctl and Dovecot daemonise, so they are not our children).
SERVER_COMMANDS = {"postgres", "redis-server", "dovecot", "imap", "imap-login", "auth", "anvil",
                   "log", "config", "stats", "indexer", "indexer-worker"}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far (Linux /proc): the whole machine (every CPU, every program);
    this process (the bench: poller, load generator and watchers, all threads); the Celery
    worker processes it started; and the servers (PostgreSQL, Redis, Dovecot, counted by
    process name, so another program's use of them on a shared machine counts here too).
    Processes that ended meanwhile are not counted.  Also ``worker_switches``: the workers'
    involuntary context switches so far (how often the scheduler took the CPU from a worker
    in the middle of its work), a count, not seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat", encoding="ascii") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    me = os.getpid()
    workers = servers = switches = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="ascii", errors="replace")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        cpu = (int(rest[11]) + int(rest[12])) / tick
        if int(rest[1]) == me and b"celery" in cmdline:
            workers += cpu
            try:
                status = Path(f"/proc/{entry}/status").read_text(encoding="ascii", errors="replace")
            except OSError:
                continue  # ended meanwhile
            switches += sum(int(line.split()[1]) for line in status.splitlines()
                            if line.startswith("nonvoluntary_ctxt_switches"))
        elif name in SERVER_COMMANDS:
            servers += cpu
    own = os.times()
    return {"machine": (user + nice + system + irq + softirq + steal) / tick,
            "bench": own.user + own.system, "workers": workers, "servers": servers,
            "worker_switches": switches}


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
