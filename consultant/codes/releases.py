"""Data releases: recording each import, replacing the previous release atomically, listing them.

An import is one transaction: the new release's rows are written, the previous current release
of the same kind and variant loses its rows and its ``is_current`` flag, and only then is the
new one marked current.  Any error rolls all of it back, leaving the previous release in force.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from consultant.codes import search
from consultant.codes.files import ProgressFn, sha256_file
from consultant.codes.importers import LoadResult, no_progress
from consultant.codes.models import (
    KINDS,
    AocEdit,
    CodeRelease,
    CptDescriptor,
    HcpcsActionCode,
    HcpcsCode,
    HcpcsCorrection,
    HcpcsNocCode,
    HcpcsProcessingNote,
    HcpcsTransaction,
    Icd10cmBlock,
    Icd10cmCode,
    IoceVersion,
    MueEdit,
    PtpEdit,
    SearchTerm,
)

log = logging.getLogger(__name__)
FACT_TABLES = (Icd10cmCode, Icd10cmBlock, HcpcsCode, MueEdit, AocEdit, PtpEdit, CptDescriptor, HcpcsProcessingNote,
               HcpcsNocCode, HcpcsCorrection, HcpcsTransaction, HcpcsActionCode, IoceVersion)


@dataclass(frozen=True)
class ReleaseRef:
    """What a fact cites: the release's id, label and effective date."""

    id: int
    kind: str
    variant: str
    name: str
    effective_date: date | None
    sha256: str = ""  # of the imported file(s): with the id, tells two databases' releases apart


@dataclass
class ImportOutcome:
    kind: str
    name: str
    variant: str
    row_count: int
    sha256: str
    skipped: bool
    release_id: int
    seconds: float = 0.0

    @property
    def message(self) -> str:
        if self.skipped:
            return f"{self.name}: this file (sha256 {self.sha256[:12]}…) is already the current release; nothing to do"
        return f"{self.name}: imported {self.row_count:,} rows in {self.seconds:.1f} s"


def _loader(kind: str) -> Callable[[Session, int, Path, ProgressFn], LoadResult]:
    # Imported lazily: the CLI and the worker only pay for the importer they use.
    from consultant.codes.importers import (
        aoc,
        cpt,
        hcpcs,
        hcpcs_corrections,
        hcpcs_noc,
        hcpcs_notes,
        hcpcs_transactions,
        icd10cm_xml,
        ioce_versions,
        mue,
        ptp,
    )

    return {
        "icd10cm-xml": icd10cm_xml.load,
        "hcpcs": hcpcs.load,
        "mue": mue.load,
        "aoc": aoc.load,
        "ptp": ptp.load,
        "cpt-licensed": cpt.load,
        "hcpcs-notes": hcpcs_notes.load,
        "hcpcs-noc": hcpcs_noc.load,
        "hcpcs-corrections": hcpcs_corrections.load,
        "hcpcs-transactions": hcpcs_transactions.load,
        "ioce-versions": ioce_versions.load,
    }[kind]


def import_release(
    factory: sessionmaker[Session],
    kind: str,
    path: str | Path | Sequence[str | Path],
    *,
    progress: ProgressFn = no_progress,
    name: str | None = None,
    effective_date: date | None = None,
) -> ImportOutcome:
    """Import ``path`` as a release of ``kind``; a file already current is a no-op.

    PTP releases come in parts (CMS f1..f4): pass them together as a list; they become one
    release whose sha256 is that of the parts' sha256 values joined by newlines.
    """
    import time

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    paths = [Path(p) for p in ([path] if isinstance(path, str | Path) else path)]
    if not paths:
        raise ValueError("no file given")
    if len(paths) > 1 and kind != "ptp":
        raise ValueError(f"{kind}: import one file at a time (only PTP releases come in parts)")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    digests = [sha256_file(p) for p in paths]
    digest = digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()
    started = time.monotonic()
    with factory() as session, session.begin():
        search.ensure(session)
        same = session.scalar(
            select(CodeRelease).where(
                CodeRelease.kind == kind, CodeRelease.sha256 == digest, CodeRelease.is_current
            )
        )
        if same is not None:
            return ImportOutcome(kind, same.name, same.variant, same.row_count, digest, True, same.id)
        release = CodeRelease(
            kind=kind, variant="", name=paths[0].name, sha256=digest,
            source_file="\n".join(str(p.resolve()) for p in paths), is_current=False, details={},
        )
        session.add(release)
        session.flush()
        loader = _loader(kind)
        result = loader(session, release.id, paths[0], progress)
        for part in paths[1:]:
            more = loader(session, release.id, part, progress)
            if more.variant != result.variant:
                raise ValueError(f"{part.name}: a {more.variant} file cannot join a {result.variant} release")
            result.row_count += more.row_count
        release.name = name or result.name
        release.variant = result.variant
        release.effective_date = effective_date or result.effective_date
        release.row_count = result.row_count
        release.details = result.details
        search.index_release(session, release.id)
        previous = session.scalar(
            select(CodeRelease).where(
                CodeRelease.kind == kind,
                CodeRelease.variant == result.variant,
                CodeRelease.is_current,
            )
        )
        if previous is not None:
            purge(session, previous.id)
            previous.is_current = False
            previous.superseded_at = datetime.now(UTC)
            session.flush()  # the partial unique index allows one current release per kind
        release.is_current = True
        engine = session.get_bind()
        outcome = ImportOutcome(
            kind, release.name, release.variant, release.row_count, digest, False, release.id
        )
    vacuum(engine)
    outcome.seconds = time.monotonic() - started
    return outcome


def vacuum(engine: Engine | Connection) -> None:
    """PostgreSQL: VACUUM (ANALYZE) the code tables after an import has committed.

    Without it a fresh release is read with no planner statistics and, until autovacuum's next
    pass, with an unset visibility map, so the PTP "edits in force" counts (index-only scans)
    visit the table row by row: 64484 as column 2 took 19 ms instead of 1 ms.  VACUUM cannot
    run inside the import's transaction, hence afterwards, on its own autocommit connection.
    """
    if engine.dialect.name != "postgresql":
        return
    if isinstance(engine, Connection):
        engine = engine.engine
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for model in (CodeRelease, *FACT_TABLES, SearchTerm):
                conn.execute(text(f"VACUUM (ANALYZE) {model.__tablename__}"))  # type: ignore[attr-defined]
    except SQLAlchemyError as exc:
        # The import has committed and is in force; only its first queries will be slower
        # until autovacuum runs, so this must not report the import as failed.
        log.warning("release imported, but VACUUM (ANALYZE) of the code tables failed: %s", exc)


def purge(session: Session, release_id: int) -> None:
    """Delete a release's fact rows (its ``codes_releases`` row stays as history)."""
    search.unindex_release(session, release_id)
    session.execute(delete(SearchTerm).where(SearchTerm.release_id == release_id))
    for model in FACT_TABLES:
        session.execute(delete(model).where(model.release_id == release_id))  # type: ignore[attr-defined]


# Built once: building an ORM statement and its cache key costs more CPU than running this
# one, and every draft runs it (bench/stages.py).
_CURRENT = select(CodeRelease.id, CodeRelease.kind, CodeRelease.variant, CodeRelease.name,
                  CodeRelease.effective_date, CodeRelease.sha256).where(CodeRelease.is_current)


def current_releases(session: Session) -> dict[tuple[str, str], ReleaseRef]:
    """The releases in force, keyed by (kind, variant)."""
    rows = session.execute(_CURRENT)
    return {(r.kind, r.variant): ReleaseRef(r.id, r.kind, r.variant, r.name, r.effective_date, r.sha256)
            for r in rows}


def list_releases(session: Session) -> list[dict[str, Any]]:
    """Every release ever imported, newest first, as JSON-ready dicts."""
    out = []
    for r in session.scalars(select(CodeRelease).order_by(CodeRelease.id.desc())):
        out.append({
            "id": r.id,
            "kind": r.kind,
            "variant": r.variant,
            "name": r.name,
            "effective_date": r.effective_date.isoformat() if r.effective_date else None,
            "row_count": r.row_count,
            "sha256": r.sha256,
            "source_file": r.source_file,
            "imported_at": r.imported_at.isoformat() if r.imported_at else None,
            "current": r.is_current,
            "superseded_at": r.superseded_at.isoformat() if r.superseded_at else None,
        })
    return out

