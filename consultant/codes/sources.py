"""Which releases answer a question: the current ones in the database, plus ICD-10-CM from an
imported release when there is one, else from the built-in package data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from consultant.codes.models import KIND_ICD10CM
from consultant.codes.releases import ReleaseRef, current_releases


@dataclass
class Sources:
    """The database session, the releases in force, and where ICD-10-CM comes from."""

    session: Session
    releases: dict[tuple[str, str], ReleaseRef]
    icd_session: Session
    icd: ReleaseRef

    @cached_property
    def connection(self) -> Connection:
        """The session's connection (same transaction), for many small Core queries."""
        return self.session.connection()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        """The rows of a small Core query.  Through the Connection, not Session.execute: about
        half the overhead per query, and lookups make many."""
        return list(self.connection.execute(text(sql), params))

    def get(self, kind: str, variant: str = "") -> ReleaseRef | None:
        return self.releases.get((kind, variant))

    def of_kind(self, kind: str) -> list[ReleaseRef]:
        return [r for (k, _), r in sorted(self.releases.items()) if k == kind]


_RELEASES_KEY = "caseconsultant.codes.sources.releases"


def _releases(session: Session) -> dict[tuple[str, str], ReleaseRef]:
    """The releases in force, queried once per transaction: drafting one mail opens sources
    several times (the analysis and each look-up), and an import commits in its own."""
    if not session.in_transaction():
        return current_releases(session)
    transaction = session.get_transaction()
    cached = session.info.get(_RELEASES_KEY)
    if cached is not None and cached[0] is transaction:
        return dict(cached[1])
    releases = current_releases(session)
    session.info[_RELEASES_KEY] = (transaction, releases)
    return dict(releases)


@contextmanager
def open_sources(session: Session) -> Iterator[Sources]:
    """Resolve the releases once for a whole lookup/analysis (one query per transaction)."""
    releases = _releases(session)
    imported = releases.get((KIND_ICD10CM, ""))
    if imported is not None:
        yield Sources(session, releases, session, imported)
        return
    from consultant.codes.builtin import builtin_icd

    factory, ref = builtin_icd()
    with factory() as icd_session:
        yield Sources(session, releases, icd_session, ref)
