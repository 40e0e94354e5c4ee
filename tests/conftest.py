"""Shared fixtures: settings on a temp database, and the real servers the pipeline talks to."""

from __future__ import annotations

import os
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from consultant.db import make_engine, make_session_factory, upgrade
from consultant.privacy.crypto import generate_key, load_keys
from consultant.settings import Settings, load_settings
from tests import servers

pytest_plugins = ("celery.contrib.pytest",)

TEST_RAW_MAIL_KEY = generate_key()


# --- servers (session scope: started once) ---------------------------------------------------
@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.Server]:
    server = servers.start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: servers.Server) -> str:
    return servers.redis_db_url(redis_server.url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.Server]:
    server = servers.start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def imap_server() -> Iterator[servers.ImapServer]:
    server = servers.start_imap(["consult", "alice", "bob", "carol", "dave", "erin", "frank"])
    yield server
    server.stop()


@pytest.fixture
def smtp_sink() -> Iterator[servers.SmtpSink]:
    sink = servers.start_smtp_sink()
    yield sink
    sink.stop()


# --- databases -------------------------------------------------------------------------------
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cc.sqlite'}"


@pytest.fixture
def postgres_url(postgres_server: servers.Server) -> Iterator[str]:
    url, drop = servers.fresh_pg_database(postgres_server.url)
    yield url
    drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cc.sqlite'}"
        return
    server = request.getfixturevalue("postgres_server")
    url, drop = servers.fresh_pg_database(server.url)
    yield url
    drop()


def make_settings(db_url: str, tmp_path: Path, **sections: dict) -> Settings:
    """Settings from the bundled defaults (environment ignored), pointed at test resources."""
    settings = load_settings(environ={})
    settings.database.url = db_url
    settings.broker.url = "memory://"
    settings.service.address = "consult@cc.test"
    settings.smtp_out.maildir = str(tmp_path / "outbox-maildir")
    # Raw mail is encrypted at rest: one key for the whole test run, never a file in the repo.
    settings.privacy.raw_mail_keys = [TEST_RAW_MAIL_KEY]
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(settings, section), key, value)
    return settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    upgrade(db_url)
    return make_settings(db_url, tmp_path)


@pytest.fixture
def factory(settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.database.url, keys=load_keys(settings.privacy))
    yield make_session_factory(engine)
    engine.dispose()


# --- mail helpers ----------------------------------------------------------------------------
def question_mail(sender: str = "coder@clinic.test", subject: str = "Can 77301 and 77338 be billed together?",
                  body: str = "Medicare, office, DOS 2026-05-01. Can 77301 and 77338 be billed the same day?",
                  to: str = "consult@cc.test", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = headers.pop("message_id", make_msgid(domain="clinic.test"))
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


@pytest.fixture
def shared() -> Path:
    return servers.require_shared()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CC_SKIP_SLOW") == "1":
        skip = pytest.mark.skip(reason="CC_SKIP_SLOW=1")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
