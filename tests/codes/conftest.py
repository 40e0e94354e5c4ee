"""Fixtures for the code knowledge base: the shared CMS files, and loaded databases on SQLite
(always) and PostgreSQL (when ``$DATABASE_URL`` is set; a fresh database per run, dropped after).

The shared data live beside the repository (``../shared``) or at ``$CASECONSULTANT_SHARED``.
Tests that need them skip when absent, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import csv
import gzip
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import consultant.models
from consultant.codes.releases import import_release
from consultant.db import Base, make_engine, make_session_factory

consultant.models.import_all_models()

SHARED = Path(os.environ.get("CASECONSULTANT_SHARED") or Path(__file__).resolve().parents[2] / ".." / "shared")
CMS = SHARED / "data" / "cms"
ICD_XML = CMS / "icd10cm" / "icd10cm_tabular_FY2026_April-1-2026.xml.gz"
HCPCS_TXT = CMS / "hcpcs" / "HCPC2026_JAN_ANWEB_01122026.txt.gz"
HCPCS_XLSX = CMS / "hcpcs" / "HCPC2026_JAN_ANWEB_01122026.xlsx"
MUE_CSV = CMS / "ncci_mue" / "MCR_MUE_PractitionerServices_Eff_04-01-2026.csv"
AOC_XLSX = CMS / "ncci_aoc" / "AOC_V2026Q2-MCR.xlsx"
PTP_DIR = CMS / "ncci-ptp"
PTP_V302 = PTP_DIR / "ptp_practitioner_v302_2024q3.csv.gz"
# Codes the check tests talk about; the session fixture imports every PTP row that has one of
# them in column 1 or 2 (a real-data subset: importing all 2.5M rows once is its own test).
PTP_SUBSET_CODES = {"20610", "99211", "99212", "99213", "99214", "99215", "77301", "77306",
                    "77338", "64483", "64484", "0001A", "0591T", "J1885", "J1100", "96372"}


def need(path: Path) -> Path:
    """``path`` if the shared data are present; else skip (or fail under CI=true)."""
    if path.exists():
        return path
    message = f"shared CMS data not found at {path} (set CASECONSULTANT_SHARED)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get("DATABASE_URL") else ["sqlite"]


@pytest.fixture(scope="session", autouse=True)
def builtin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache for the built-in ICD-10-CM database (built once per test session)."""
    folder = tmp_path_factory.mktemp("codes-cache")
    os.environ["CASECONSULTANT_CODES_CACHE"] = str(folder)
    return folder


@dataclass
class Db:
    backend: str
    url: str
    factory: sessionmaker[Session]

    def session(self) -> Session:
        return self.factory()


def _fresh_database(backend: str) -> Iterator[str]:
    """A new empty database URL; PostgreSQL databases are created and dropped around the run."""
    if backend == "sqlite":
        import tempfile

        with tempfile.TemporaryDirectory(prefix="cc-codes-") as folder:
            yield f"sqlite:///{folder}/codes.sqlite"
        return
    import psycopg

    admin = make_url(os.environ["DATABASE_URL"])
    name = f"cc_codes_{uuid.uuid4().hex[:10]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_db(backend: str) -> Iterator[Db]:
    for url in _fresh_database(backend):
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        try:
            yield Db(backend, url, make_session_factory(engine))
        finally:
            engine.dispose()


@pytest.fixture(params=backends())
def empty_db(request: pytest.FixtureRequest) -> Iterator[Db]:
    """A database with the schema and no code data (ICD-10-CM still comes from the package)."""
    yield from make_db(request.param)


@pytest.fixture(scope="session")
def ptp_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real v30.2 practitioner rows that mention one of ``PTP_SUBSET_CODES``."""
    source = need(PTP_V302)
    target = tmp_path_factory.mktemp("ptp") / "ptp_practitioner_v302_2024q3.csv.gz"
    with gzip.open(source, "rt", newline="") as src, gzip.open(target, "wt", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
        writer.writerow(next(reader))
        for row in reader:
            if row[0] in PTP_SUBSET_CODES or row[1] in PTP_SUBSET_CODES:
                writer.writerow(row)
    return target


@pytest.fixture(scope="session", params=backends())
def loaded_db(request: pytest.FixtureRequest, ptp_subset: Path) -> Iterator[Db]:
    """HCPCS, MUE, AOC and the PTP subset imported (ICD-10-CM: built-in)."""
    for db in make_db(request.param):
        for kind, path in (("hcpcs", HCPCS_TXT), ("mue", MUE_CSV), ("aoc", AOC_XLSX), ("ptp", ptp_subset)):
            import_release(db.factory, kind, need(path))
        yield db
