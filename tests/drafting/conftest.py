"""A knowledge base built once from the real CMS/CDC files in ../shared, copied per test.

Only the PTP rows whose two codes both appear in the test mails (or in EXTRA_CODES) are imported
(``tests/kb.py``); the golden mails' dates of service are in 2026 Q2, answered by the dated v30.2
practitioner table.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from consultant.codes.extract import extract
from consultant.db import make_engine, make_session_factory, upgrade
from consultant.mail.body import new_text
from consultant.mail.parse import parse_mail
from consultant.privacy.crypto import load_keys
from consultant.settings import Settings
from tests import kb, servers
from tests.conftest import make_settings

MAILS = Path(__file__).with_name("mails")
EXTRA_CODES = {"20610", "99214", "99213", "77301", "77306", "77338", "64483", "64484", "96372"}


def mail_codes() -> set[str]:
    codes = set(EXTRA_CODES)
    for path in MAILS.glob("*.eml"):
        view = parse_mail(path.read_bytes())
        codes |= {m.code for m in extract(view.subject + "\n" + new_text(view)).mentions}
    return codes


@pytest.fixture(scope="session")
def kb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file holding HCPCS, MUE, AOC, ICD-10-CM and (filtered) PTP releases."""
    shared = servers.require_shared()
    cms = shared / "data" / "cms"
    if not cms.is_dir():
        servers.unavailable(f"{cms} is missing (the CMS data files)")
    work = tmp_path_factory.mktemp("kb")
    path = kb.build(work / "kb.sqlite", cms, mail_codes(), kb.PTP_FILES[:1])
    return path


@pytest.fixture
def kb_settings(kb_template: Path, tmp_path: Path) -> Settings:
    """Settings on a private copy of the knowledge base (each test may write to it)."""
    copy = tmp_path / "cc.sqlite"
    shutil.copyfile(kb_template, copy)
    return make_settings(f"sqlite:///{copy}", tmp_path)


@pytest.fixture
def kb_factory(kb_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(kb_settings.database.url, keys=load_keys(kb_settings.privacy))
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def plain_settings(tmp_path: Path) -> Settings:
    """A database with no code data imported (ICD-10-CM still works from the built-in table)."""
    url = f"sqlite:///{tmp_path / 'plain.sqlite'}"
    upgrade(url)
    return make_settings(url, tmp_path)


def load_mail(name: str) -> bytes:
    return (MAILS / f"{name}.eml").read_bytes()
