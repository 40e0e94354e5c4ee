"""Console accounts, their sessions and API tokens, and the login-attempt log for rate limits.

Nothing secret is stored in a form that can be replayed: passwords as argon2 hashes, session
and API tokens as SHA-256 digests of high-entropy random values (a stolen database row cannot
be turned back into a working cookie or bearer token).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from consultant.db import Base
from consultant.models import TZDateTime, utcnow

ROLE_CONSULTANT = "consultant"
ROLE_ADMIN = "admin"
ROLES = (ROLE_CONSULTANT, ROLE_ADMIN)


class ConsultantUser(Base):
    """A person who reviews cases in the console (and may own API tokens)."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    credential: Mapped[str | None] = mapped_column(String(64))  # e.g. CPC, CCS
    role: Mapped[str] = mapped_column(String(16), default=ROLE_CONSULTANT)
    # The team whose macros this consultant shares ("" = the default team).  A string rather
    # than a teams table: teams have no other property yet, and a name is all macros need.
    team: Mapped[str] = mapped_column(String(64), default="", server_default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(TZDateTime())

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN


class ConsoleSession(Base):
    """A logged-in browser.  Server-side so that logout and deactivation take effect at once."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"),
                                         index=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TZDateTime())
    ip: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[ConsultantUser] = relationship()


class ApiToken(Base):
    """A bearer token for integrations; only its digest and a display prefix are kept."""

    __tablename__ = "console_api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"),
                                         index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(TZDateTime())

    user: Mapped[ConsultantUser] = relationship()


class LoginAttempt(Base):
    """One login attempt; failures in a sliding window decide the rate limit (shared by all
    console processes because it lives in the database, not in memory)."""

    __tablename__ = "console_login_attempts"
    __table_args__ = (Index("ix_console_login_attempts_email_ip_at", "email", "ip", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    ip: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, index=True)


class CaseViewer(Base):
    """Who has a case open in the console, for the "X is viewing/editing" notice (one row per
    case and consultant, touched on every page view; stale rows are simply ignored)."""

    __tablename__ = "console_case_viewers"
    __table_args__ = (UniqueConstraint("case_id", "email", name="uq_console_case_viewers"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(255))
    seen_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class CaseNote(Base):
    """A consultant's internal note on one case: for colleagues, never part of any mail."""

    __tablename__ = "console_case_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class Macro(Base):
    """A canned answer snippet of one team, with variables such as ``{{ case_ref }}``
    (rendered by consultant.review.macros in a sandboxed Jinja2 environment)."""

    __tablename__ = "console_macros"
    __table_args__ = (UniqueConstraint("team", "name", name="uq_console_macros_team_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team: Mapped[str] = mapped_column(String(64), default="", index=True)
    name: Mapped[str] = mapped_column(String(80))
    text: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
