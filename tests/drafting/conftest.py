"""A knowledge base built once from the real CMS/CDC files in ../shared, copied per test.

Importing the full practitioner PTP table takes about half a minute, so the session fixture keeps
only the PTP rows whose two codes both appear in the test mails (or in EXTRA_CODES), written to a
file with the original name so the release label is the real one.  For any pair of those codes the
filtered table holds exactly the rows of the full table.
"""

from __future__ import annotations

import csv
import gzip
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from consultant.codes.releases import import_release
from consultant.db import make_engine, make_session_factory, upgrade
from consultant.drafting.questions import find_codes
from consultant.mail.body import new_text
from consultant.mail.parse import parse_mail
from consultant.privacy.crypto import load_keys
from consultant.settings import Settings
from tests import servers
from tests.conftest import make_settings

MAILS = Path(__file__).with_name("mails")
EXTRA_CODES = {"20610", "99214", "99213", "77301", "77306", "77338", "64483", "64484", "96372"}
PTP_FILE = "ncci-ptp/ptp_practitioner_v302_2024q3.csv.gz"


def mail_codes() -> set[str]:
    codes = set(EXTRA_CODES)
    for path in MAILS.glob("*.eml"):
        view = parse_mail(path.read_bytes())
        codes |= set(find_codes(view.subject + "\n" + new_text(view)))
    return codes


def _filtered_ptp(source: Path, target_dir: Path, codes: set[str]) -> Path:
    target = target_dir / source.name
    with gzip.open(source, "rt", newline="") as src, gzip.open(target, "wt", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(next(reader))
        for row in reader:
            if row[0] in codes and row[1] in codes:
                writer.writerow(row)
    return target


@pytest.fixture(scope="session")
def kb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file holding HCPCS, MUE, AOC, ICD-10-CM and (filtered) PTP releases."""
    shared = servers.require_shared()
    cms = shared / "data" / "cms"
    if not cms.is_dir():
        servers.unavailable(f"{cms} is missing (the CMS data files)")
    work = tmp_path_factory.mktemp("kb")
    path = work / "kb.sqlite"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    for kind, rel in (("hcpcs", "hcpcs/HCPC2026_JAN_ANWEB_01122026.txt.gz"),
                      ("mue", "ncci_mue/MCR_MUE_PractitionerServices_Eff_04-01-2026.csv"),
                      ("aoc", "ncci_aoc/AOC_V2026Q2-MCR.xlsx"),
                      ("icd10cm-xml", "icd10cm/icd10cm_tabular_FY2026_April-1-2026.xml.gz")):
        import_release(factory, kind, cms / rel)
    ptp_dir = work / "ptp"
    ptp_dir.mkdir()
    import_release(factory, "ptp", _filtered_ptp(cms / PTP_FILE, ptp_dir, mail_codes()))
    engine.dispose()
    # Fold the WAL into the main file so a plain file copy is the whole database.
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
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
