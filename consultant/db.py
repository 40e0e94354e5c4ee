"""Engine and session factory; schema creation through Alembic migrations."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

if TYPE_CHECKING:
    from consultant.privacy.crypto import RawMailKeys


class Base(DeclarativeBase):
    """Declarative base shared by every table of the service."""


def make_engine(url: str, keys: RawMailKeys | None = None) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys.

    ``keys``: the raw-mail encryption keys (consultant.privacy.crypto); an engine without them
    cannot read or write ``inbound_mail.raw`` (it says so), e.g. the migrations' engine.

    Several processes (poller, worker, console) share one SQLite file in the embedded setup, so
    writers wait for each other (busy timeout) instead of failing with "database is locked".
    """
    engine: Engine
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Python's sqlite3 opens transactions lazily; BEGIN IMMEDIATE on first write is
            # emulated below so two writers never deadlock on a lock upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    else:
        engine = create_engine(url)
        _ping_after_idle(engine)
    if keys is not None:
        from consultant.privacy.crypto import attach

        attach(engine, keys)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose audit events are sealed into the hash chain at commit."""
    from consultant.audit.chain import install

    factory = sessionmaker(engine, expire_on_commit=False)
    install(factory)
    return factory


# A pooled connection unused for this long is tested before it is handed out.
IDLE_PING_SECONDS = 10.0


def _ping_after_idle(engine: Engine) -> None:
    """Test a pooled connection on checkout only when it has been idle a while.

    ``pool_pre_ping`` tests every checkout: a round trip per transaction, two per processed
    mail, on connections a busy worker used a few milliseconds earlier.  A connection the server
    dropped is found on the first checkout after the idle gap that usually explains it (a
    restart, an idle timeout, a failover); one that breaks mid-burst fails its statement, which
    invalidates the pool, and the task is retried like any transient database error.
    """
    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, proxy):  # type: ignore[no-untyped-def]
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool's documented contract: it discards this connection and checks out
            # another (up to three times) instead of handing a dead one to the caller.
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


@contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads that need no transaction of their own.

    On PostgreSQL it runs in autocommit: no BEGIN and ROLLBACK round trips around a single
    SELECT (a task's first look at its row is most of what an already-done task costs).  SQLite
    keeps a plain session, as its engine turns every BEGIN into BEGIN IMMEDIATE (see above).
    """
    with factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any exception."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (idempotent)."""
    from alembic import command

    import consultant.models  # noqa: F401  (registers every table on Base.metadata)

    command.upgrade(alembic_config(url), "head")
