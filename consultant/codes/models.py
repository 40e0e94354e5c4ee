"""Tables of the code knowledge base: data releases and the facts each release brings.

Every fact row carries ``release_id`` so any answer can cite the CMS/CDC release it came from.
Only one release per (kind, variant) is *current*; importing a new one swaps the flag and deletes
the previous release's rows in the same transaction, so readers never see a mix of two releases.

Not visible to Alembic autogenerate (created idempotently by ``consultant.codes.search.ensure``):
the SQLite FTS5 table ``codes_search_fts``.  PostgreSQL searches the stored ``codes_search.tsv``
column through a GIN index declared below, so the migration creates it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from consultant.db import Base
from consultant.models import TZDateTime, utcnow

# Release kinds, as accepted by ``codes import KIND``.
KIND_ICD10CM = "icd10cm-xml"
KIND_HCPCS = "hcpcs"
KIND_MUE = "mue"
KIND_AOC = "aoc"
KIND_PTP = "ptp"
KIND_CPT = "cpt-licensed"
# Companion files of the HCPCS release and the I/OCE version table (tables at the end).
KIND_HCPCS_NOTES = "hcpcs-notes"
KIND_HCPCS_NOC = "hcpcs-noc"
KIND_HCPCS_CORRECTIONS = "hcpcs-corrections"
KIND_HCPCS_TRANSACTIONS = "hcpcs-transactions"
KIND_IOCE_VERSIONS = "ioce-versions"
KINDS = (KIND_ICD10CM, KIND_HCPCS, KIND_MUE, KIND_AOC, KIND_PTP, KIND_CPT, KIND_HCPCS_NOTES,
         KIND_HCPCS_NOC, KIND_HCPCS_CORRECTIONS, KIND_HCPCS_TRANSACTIONS, KIND_IOCE_VERSIONS)


class CodeRelease(Base):
    """One imported file: what it is, where it came from, and whether it is in force here."""

    __tablename__ = "codes_releases"
    __table_args__ = (
        # At most one current release per kind and variant (e.g. PTP practitioner vs hospital).
        Index(
            "uq_codes_releases_current",
            "kind",
            "variant",
            unique=True,
            sqlite_where=text("is_current = 1"),
            postgresql_where=text("is_current"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    variant: Mapped[str] = mapped_column(String(32), default="")
    name: Mapped[str] = mapped_column(String(200))
    effective_date: Mapped[date | None] = mapped_column(Date)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    source_file: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def _release_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("codes_releases.id", ondelete="CASCADE"))


class Icd10cmCode(Base):
    """An ICD-10-CM tabular entry (``diag``) or a code built from a 7th-character definition."""

    __tablename__ = "codes_icd10cm"
    __table_args__ = (UniqueConstraint("release_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    code: Mapped[str] = mapped_column(String(8))  # dotted, e.g. "E11.22"
    description: Mapped[str] = mapped_column(Text)
    billable: Mapped[bool] = mapped_column(Boolean)
    # True for a leaf that is only valid with a 7th character (S72.001 -> S72.001A).
    needs_7th: Mapped[bool] = mapped_column(Boolean, default=False)
    parent: Mapped[str | None] = mapped_column(String(8))
    # Notes keyed by kind (inclusion, includes, excludes1, excludes2, code_first, use_additional,
    # code_also, notes, seven_chr_note, seven_chr_def); only the notes written at this level.
    notes: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Icd10cmBlock(Base):
    """A chapter or section of the ICD-10-CM tabular: its range, title and the notes written at
    that level, which apply to every code in the range (chapter 19's 7th-character conventions,
    section O00-O08's Excludes1...)."""

    __tablename__ = "codes_icd10cm_blocks"
    __table_args__ = (UniqueConstraint("release_id", "level", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    level: Mapped[str] = mapped_column(String(8))  # chapter | section
    name: Mapped[str] = mapped_column(String(16))  # chapter number ("4") or section id ("E08-E13")
    first: Mapped[str] = mapped_column(String(3))  # first and last category of the range
    last: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(Text)
    notes: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class HcpcsCode(Base):
    """A HCPCS Level II code (``is_modifier`` false) or Level II modifier."""

    __tablename__ = "codes_hcpcs"
    __table_args__ = (UniqueConstraint("release_id", "code", "is_modifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    code: Mapped[str] = mapped_column(String(5))
    is_modifier: Mapped[bool] = mapped_column(Boolean, default=False)
    long_description: Mapped[str] = mapped_column(Text)
    short_description: Mapped[str] = mapped_column(String(64))
    coverage: Mapped[str | None] = mapped_column(String(1))
    add_date: Mapped[date | None] = mapped_column(Date)
    action_effective_date: Mapped[date | None] = mapped_column(Date)
    term_date: Mapped[date | None] = mapped_column(Date)
    action_code: Mapped[str | None] = mapped_column(String(1))
    # The remaining record fields (pricing indicators, BETOS, TOS, ASC/OPPS groups...).
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MueEdit(Base):
    __tablename__ = "codes_mue"
    __table_args__ = (UniqueConstraint("release_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    code: Mapped[str] = mapped_column(String(5))
    value: Mapped[int] = mapped_column(Integer)
    mai: Mapped[int] = mapped_column(SmallInteger)
    rationale: Mapped[str | None] = mapped_column(String(200))


class AocEdit(Base):
    __tablename__ = "codes_aoc"
    __table_args__ = (
        Index("ix_codes_aoc_addon", "release_id", "addon_code"),
        Index("ix_codes_aoc_primary", "release_id", "primary_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    addon_code: Mapped[str] = mapped_column(String(5))
    primary_code: Mapped[str] = mapped_column(String(5))
    edit_type: Mapped[int] = mapped_column(SmallInteger)
    addon_deletion_date: Mapped[date | None] = mapped_column(Date)
    primary_deletion_date: Mapped[date | None] = mapped_column(Date)
    effective_date: Mapped[date | None] = mapped_column(Date)
    deletion_date: Mapped[date | None] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(Text)


class PtpRationale(Base):
    """The dozen PTP rationale texts, stored once instead of on 2.5 million rows."""

    __tablename__ = "codes_ptp_rationale"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200), unique=True)


class PtpEdit(Base):
    """One PTP edit row.  No foreign keys on purpose: a release has ~2.5 million rows and
    PostgreSQL checks each foreign key with a per-row trigger (it doubled COPY time).  Rows are
    only written and deleted by ``releases.import_release``/``purge`` inside one transaction."""

    __tablename__ = "codes_ptp"
    __table_args__ = (
        # Both indexes cover the "in force today" filter (deletion date, modifier indicator) so
        # counting a code's edits never touches the table (99214 is column 2 of thousands), and
        # each lists its edits in index order (by the other column).  The other column comes
        # before deletion_date: PostgreSQL does not treat "deletion_date IS NULL" as fixing
        # that column, so with it first it sorted all 5,572 edits of 64484 to show 50 (11 ms).
        Index("ix_codes_ptp_pair", "release_id", "column_1", "column_2", "deletion_date",
              "modifier_indicator"),
        Index("ix_codes_ptp_col2", "release_id", "column_2", "column_1", "deletion_date",
              "modifier_indicator"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(Integer)
    column_1: Mapped[str] = mapped_column(String(5))
    column_2: Mapped[str] = mapped_column(String(5))
    prior_1996: Mapped[bool | None] = mapped_column(Boolean)
    effective_date: Mapped[date | None] = mapped_column(Date)
    deletion_date: Mapped[date | None] = mapped_column(Date)
    modifier_indicator: Mapped[int] = mapped_column(SmallInteger)
    rationale_id: Mapped[int | None] = mapped_column(SmallInteger)  # codes_ptp_rationale.id


class CptDescriptor(Base):
    """Operator-supplied, AMA-licensed CPT descriptors.  Never populated from this repository."""

    __tablename__ = "codes_cpt"
    __table_args__ = (UniqueConstraint("release_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    code: Mapped[str] = mapped_column(String(5))
    descriptor: Mapped[str] = mapped_column(Text)


class SearchTerm(Base):
    """A searchable text (descriptor or inclusion term) of one code in one release."""

    __tablename__ = "codes_search"
    __table_args__ = (
        Index("ix_codes_search_release", "release_id"),
        # A plain column index, not an expression index, so the Alembic migration (generated on
        # SQLite) carries it to PostgreSQL too; on SQLite it is a b-tree over NULLs (harmless).
        Index("ix_codes_search_tsv", "tsv", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    system: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(8))
    field: Mapped[str] = mapped_column(String(16))  # descriptor | short | inclusion
    body: Mapped[str] = mapped_column(Text)
    # PostgreSQL only: to_tsvector('english', body), filled by ``search.index_release``.  Stored
    # rather than an expression index because ranking reads it per candidate row; recomputing
    # to_tsvector there cost ~250 ms on common words.  NULL (and unused) on SQLite, which has FTS5.
    tsv: Mapped[str | None] = mapped_column(Text().with_variant(TSVECTOR(), "postgresql"))


class HcpcsProcessingNote(Base):
    """A numbered HCPCS processing note (``proc_notes_*.txt``); a code's PROCNOTE points at one."""

    __tablename__ = "codes_hcpcs_notes"
    __table_args__ = (UniqueConstraint("release_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    number: Mapped[str] = mapped_column(String(4))  # zero-padded, as in the PROCNOTE field
    text: Mapped[str] = mapped_column(Text)


class HcpcsNocCode(Base):
    """A not-otherwise-classified HCPCS code (CMS ``NOC codes_<MON><YYYY>.xlsx``)."""

    __tablename__ = "codes_hcpcs_noc"
    __table_args__ = (UniqueConstraint("release_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    code: Mapped[str] = mapped_column(String(5))
    long_description: Mapped[str] = mapped_column(Text)
    add_date: Mapped[date | None] = mapped_column(Date)
    term_date: Mapped[date | None] = mapped_column(Date)


class HcpcsCorrection(Base):
    """One row of CMS's corrections to a HCPCS file.  A code may be corrected more than once;
    ``row`` keeps CMS's order.  ``action`` is CMS's free text ("Terminate", "Revise TOS")."""

    __tablename__ = "codes_hcpcs_corrections"
    __table_args__ = (Index("ix_codes_hcpcs_corrections_code", "release_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    row: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(5))
    action: Mapped[str] = mapped_column(Text)
    short_description: Mapped[str | None] = mapped_column(Text)
    long_description: Mapped[str | None] = mapped_column(Text)
    effective_date: Mapped[date | None] = mapped_column(Date)
    # The other corrected columns that are filled (TOS, BETOS, Coverage, Pricing...).
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class HcpcsTransaction(Base):
    """A code's action in a HCPCS annual-update transaction report ("Changes by HCPC")."""

    __tablename__ = "codes_hcpcs_transactions"
    __table_args__ = (UniqueConstraint("release_id", "code", "is_modifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    code: Mapped[str] = mapped_column(String(5))
    is_modifier: Mapped[bool] = mapped_column(Boolean, default=False)
    action: Mapped[str] = mapped_column(String(64))  # as the report words it ("ADD", "No Change")
    action_code: Mapped[str | None] = mapped_column(String(1))  # its letter in the Action Code Key
    short_description: Mapped[str | None] = mapped_column(Text)
    long_description: Mapped[str | None] = mapped_column(Text)


class HcpcsActionCode(Base):
    """The transaction report's "Action Code Key": letter -> meaning (also explains ACTION CD)."""

    __tablename__ = "codes_hcpcs_action_codes"
    __table_args__ = (UniqueConstraint("release_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    code: Mapped[str] = mapped_column(String(1))
    meaning: Mapped[str] = mapped_column(String(200))


class IoceVersion(Base):
    """An I/OCE version and the dates it applied to (the hospital NCCI PTP table is dated by them)."""

    __tablename__ = "codes_ioce_versions"
    __table_args__ = (UniqueConstraint("release_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = _release_fk()
    seq: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(16))  # e.g. "26.2.3"
    date_started: Mapped[date] = mapped_column(Date)
    date_ended: Mapped[date] = mapped_column(Date)
