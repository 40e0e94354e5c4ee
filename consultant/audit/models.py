"""Where the audit chain continues after retention pruning removed its oldest events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from consultant.db import Base
from consultant.models import TZDateTime, utcnow


class AuditAnchor(Base):
    """Pruning events up to ``through_seq`` keeps that event's hash here, so ``audit verify``
    still checks that the first remaining event follows it (a deleted head is detected)."""

    __tablename__ = "audit_anchors"

    id: Mapped[int] = mapped_column(primary_key=True)
    through_seq: Mapped[int] = mapped_column(Integer, unique=True)
    last_hash: Mapped[str] = mapped_column(String(64))
    pruned: Mapped[int] = mapped_column(Integer)
    pruned_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
