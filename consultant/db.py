"""Engine and session factory; schema creation through Alembic migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
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
        engine = create_engine(url, pool_pre_ping=True)
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
