"""The built-in ICD-10-CM release: the tabular XML shipped inside simple-icd-10-cm.

Usable with no import: on first use the package's XML is loaded by the very importer operators
use (``importers.icd10cm_xml``) into a small SQLite file in a cache directory, which every later
process opens read-only.  Building it once (about 3 s) beats importing simple_icd_10_cm in each
worker (2 s and ~150 MB per process).  An imported ``icd10cm-xml`` release takes precedence.

Cache location: ``$CASECONSULTANT_CODES_CACHE``, else ``$XDG_CACHE_HOME/caseconsultant``, else
``~/.cache/caseconsultant`` (the temp dir if none of those is writable).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import tempfile
import threading
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from consultant.codes.models import KIND_ICD10CM
from consultant.codes.releases import ReleaseRef

PACKAGE = "simple-icd-10-cm"
# Bump when the codes tables or the ICD importer change, so stale caches are rebuilt.
CACHE_SCHEMA = 2  # 2: chapter and section notes (codes_icd10cm_blocks)

_lock = threading.Lock()
_cached: tuple[sessionmaker[Session], ReleaseRef] | None = None


def package_xml() -> Path:
    """The tabular XML inside the installed package (found without importing the package)."""
    spec = importlib.util.find_spec("simple_icd_10_cm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed; the built-in ICD-10-CM needs it")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    found = sorted(folder.glob("*tabular*.xml"))
    if not found:
        raise RuntimeError(f"no tabular XML in {folder}")
    return found[-1]


def label(xml: Path) -> str:
    """E.g. ``ICD-10-CM FY2026 (simple-icd-10-cm 1.5.0)``."""
    with xml.open("rb") as fh:
        m = re.search(rb"<version>(\d{4})</version>", fh.read(4096))
    fy = f"FY{m.group(1).decode()}" if m else "(unknown FY)"
    return f"ICD-10-CM {fy} ({PACKAGE} {importlib.metadata.version(PACKAGE)})"


def cache_dir() -> Path:
    env = os.environ.get("CASECONSULTANT_CODES_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "caseconsultant"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"caseconsultant-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _build(target: Path, xml: Path, name: str) -> None:
    """Import the package XML into a fresh SQLite file, then move it into place atomically."""
    from consultant.codes.releases import import_release
    from consultant.db import Base, make_session_factory

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    # A plain engine (rollback journal, not WAL): the result is one self-contained file.
    engine = create_engine(f"sqlite:///{tmp}")
    try:
        tables = [t for n, t in Base.metadata.tables.items() if n.startswith("codes_")]
        Base.metadata.create_all(engine, tables=tables)
        import_release(make_session_factory(engine), KIND_ICD10CM, xml, name=name)
        engine.dispose()
        os.replace(tmp, target)  # concurrent builders: the last rename wins, both are complete
    finally:
        engine.dispose()
        if os.path.exists(tmp):
            os.unlink(tmp)


def builtin_icd() -> tuple[sessionmaker[Session], ReleaseRef]:
    """A session factory on the built-in ICD-10-CM database and the release it holds."""
    global _cached
    with _lock:
        if _cached is not None:
            return _cached
        import consultant.codes.models  # noqa: F401  (tables on Base.metadata)

        xml = package_xml()
        name = label(xml)
        digest = hashlib.sha256(xml.read_bytes()).hexdigest()[:16]
        target = cache_dir() / f"icd10cm-builtin-{digest}-s{CACHE_SCHEMA}.sqlite"
        if not target.exists():
            _build(target, xml, name)
        engine = create_engine(f"sqlite:///file:{target}?mode=ro&uri=true")
        factory = sessionmaker(engine)
        with factory() as session:
            from consultant.codes.releases import current_releases

            ref = current_releases(session)[(KIND_ICD10CM, "")]
        _cached = (factory, ref)
        return _cached
