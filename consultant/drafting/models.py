"""Drafting's own table: consultants' knowledge notes on a code or a code pair."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consultant.db import Base
from consultant.models import TZDateTime, utcnow


class KnowledgeNote(Base):
    """A consultant's note on a code ("J1885") or a pair ("20610+99214", codes sorted).

    Notes are internal (for consultants, shown on the case page with their author) unless
    ``customer_facing``: then later drafts that involve the code (or both codes of the pair)
    quote the text, without the author.  Removing a note keeps the row (``removed_at``) so
    earlier drafts stay explainable.
    """

    __tablename__ = "knowledge_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(40), index=True)
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(320))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    removed_by: Mapped[str | None] = mapped_column(String(320))
    customer_facing: Mapped[bool] = mapped_column(Boolean, default=False)
