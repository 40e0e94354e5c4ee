"""Consultant accounts: argon2 passwords, server-side sessions, API tokens, CSRF, rate limits.

Web-framework free: the console's routes and the ``users`` CLI both call these functions.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.models import utcnow
from consultant.review.models import (
    ROLES,
    ApiToken,
    ConsoleSession,
    ConsultantUser,
    LoginAttempt,
)
from consultant.settings import ConsoleSettings

log = logging.getLogger(__name__)

_hasher = PasswordHasher()
# Verifying against this when the account does not exist keeps the response time of "no such
# user" and "wrong password" alike, so timing does not reveal which addresses have accounts.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 10
# Login rate limit: this many failures per account+IP within the window → 429.  A second, wider
# limit per IP alone slows down spraying one password across many accounts, and a third per
# account from any address stops one account being guessed from many addresses (a botnet, or
# a forged X-Forwarded-For if a proxy were ever trusted by mistake).  The account limit lets a
# stranger lock a consultant out for 15 minutes; that is the price of not being guessable.
MAX_FAILURES = 5
MAX_FAILURES_PER_IP = 30
MAX_FAILURES_PER_ACCOUNT = 10
FAILURE_WINDOW = timedelta(minutes=15)
API_TOKEN_PREFIX = "cc_"


class AuthError(Exception):
    """An account operation is not possible; the message says why."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password too short (at least {MIN_PASSWORD_LENGTH} characters)")
    return _hasher.hash(password)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- accounts -------------------------------------------------------------------------------
def add_user(factory: sessionmaker[Session], email: str, password: str, *, role: str = "consultant",
             name: str | None = None, credential: str | None = None,
             team: str | None = None) -> ConsultantUser:
    """Create an account, or reset the password/role/name of an existing one."""
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r} (one of: {', '.join(ROLES)})")
    email = normalise_email(email)
    if "@" not in email:
        raise AuthError(f"not an email address: {email!r}")
    password_hash = hash_password(password)
    with transaction(factory) as session:
        user = get_user(session, email)
        if user is None:
            user = ConsultantUser(email=email)
            session.add(user)
        user.password_hash = password_hash
        user.role = role
        user.active = True
        if name is not None:
            user.name = name
        if credential is not None:
            user.credential = credential
        if team is not None:
            user.team = team.strip()[:64]
        session.flush()
        session.expunge(user)
        return user


def get_user(session: Session, email: str) -> ConsultantUser | None:
    return session.execute(
        select(ConsultantUser).where(ConsultantUser.email == normalise_email(email))
    ).scalar_one_or_none()


# --- login and its rate limit ---------------------------------------------------------------
@dataclass(frozen=True)
class LoginResult:
    user: ConsultantUser | None
    limited: bool = False


def _limited(session: Session, email: str, ip: str) -> bool:
    """Whether this login is over one of the three failure limits (see MAX_FAILURES)."""
    since = utcnow() - FAILURE_WINDOW
    failed = (LoginAttempt.success.is_(False), LoginAttempt.at >= since)

    def count(*where: Any) -> int:
        return int(session.execute(select(func.count(LoginAttempt.id)).where(*failed, *where))
                   .scalar_one())

    return (count(LoginAttempt.email == email, LoginAttempt.ip == ip) >= MAX_FAILURES
            or count(LoginAttempt.ip == ip) >= MAX_FAILURES_PER_IP
            or count(LoginAttempt.email == email) >= MAX_FAILURES_PER_ACCOUNT)


def authenticate(factory: sessionmaker[Session], email: str, password: str, ip: str) -> LoginResult:
    """Check a password, honouring and recording the rate limit.

    Once the limit is reached the password is not even checked: otherwise an attacker could
    keep guessing and simply ignore the 429s.
    """
    email = normalise_email(email)[:320]
    ip = ip[:64]
    with transaction(factory) as session:
        if _limited(session, email, ip):
            return LoginResult(None, limited=True)
        user = get_user(session, email)
        ok = False
        try:
            ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        ok = ok and user is not None and user.active
        session.add(LoginAttempt(email=email, ip=ip, success=ok))
        if not ok or user is None:
            return LoginResult(None)
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        user.last_login_at = utcnow()
        # A success clears this account's failures from this address (the window restarts).
        session.execute(delete(LoginAttempt).where(
            LoginAttempt.email == email, LoginAttempt.ip == ip, LoginAttempt.success.is_(False)))
        session.flush()
        session.expunge(user)
        return LoginResult(user)


# --- sessions -------------------------------------------------------------------------------
def start_session(factory: sessionmaker[Session], user_id: int, ip: str) -> str:
    """Open a session; returns the raw token for the cookie (only its digest is stored)."""
    token = secrets.token_urlsafe(32)
    with transaction(factory) as session:
        # Housekeeping on each login keeps both tables small without a scheduled job.
        session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < utcnow()))
        session.execute(delete(LoginAttempt).where(LoginAttempt.at < utcnow() - 4 * FAILURE_WINDOW))
        session.add(ConsoleSession(token_hash=_digest(token), user_id=user_id, ip=ip[:64],
                                   expires_at=utcnow() + SESSION_LIFETIME))
    return token


def session_user(factory: sessionmaker[Session], token: str) -> ConsultantUser | None:
    """The active user behind a session token, or None if it is unknown, expired or disabled."""
    with factory() as session:
        row = session.execute(
            select(ConsoleSession).where(ConsoleSession.token_hash == _digest(token))
        ).scalar_one_or_none()
        if row is None or row.expires_at <= utcnow() or not row.user.active:
            return None
        user = row.user
        session.expunge(user)
        return user


def end_session(factory: sessionmaker[Session], token: str) -> None:
    with transaction(factory) as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _digest(token)))


# --- API tokens -----------------------------------------------------------------------------
def mint_token(factory: sessionmaker[Session], email: str, name: str = "") -> str:
    """Create an API token for ``email``; the raw token is returned once and never stored."""
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction(factory) as session:
        user = get_user(session, email)
        if user is None:
            raise AuthError(f"no console user {normalise_email(email)!r}; add one with `users add`")
        session.add(ApiToken(user_id=user.id, name=name, prefix=token[:10], token_hash=_digest(token)))
    return token


def token_user(factory: sessionmaker[Session], token: str) -> ConsultantUser | None:
    if not token.startswith(API_TOKEN_PREFIX):
        return None
    with transaction(factory) as session:
        row = session.execute(
            select(ApiToken).where(ApiToken.token_hash == _digest(token))
        ).scalar_one_or_none()
        if row is None or row.revoked_at is not None or not row.user.active:
            return None
        row.last_used_at = utcnow()
        user = row.user
        session.flush()
        session.expunge(user)
        return user


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of an API token: never the token itself (it is not stored)."""

    id: int
    owner: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def list_tokens(factory: sessionmaker[Session], email: str | None = None) -> list[TokenInfo]:
    """Tokens of ``email`` (None: everyone's), newest first, however they were minted."""
    with factory() as session:
        query = (select(ApiToken, ConsultantUser.email).join(ConsultantUser, ApiToken.user_id == ConsultantUser.id)
                 .order_by(ApiToken.created_at.desc(), ApiToken.id.desc()))
        if email is not None:
            query = query.where(ConsultantUser.email == normalise_email(email))
        return [TokenInfo(t.id, owner, t.name, t.prefix, t.created_at, t.last_used_at, t.revoked_at)
                for t, owner in session.execute(query).all()]


def revoke_token(factory: sessionmaker[Session], token_id: int, by: ConsultantUser) -> TokenInfo:
    """Revoke one token: one's own, or anyone's for an admin.  Revoking twice is harmless."""
    with transaction(factory) as session:
        row = session.get(ApiToken, token_id)
        if row is None or (row.user_id != by.id and not by.is_admin):
            raise AuthError(f"no token {token_id} of yours")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            log.info("API token %s (%s) of %s revoked by %s", row.prefix, row.name, row.user.email,
                     by.email)
        return TokenInfo(row.id, row.user.email, row.name, row.prefix, row.created_at,
                         row.last_used_at, row.revoked_at)


def revoke_tokens(factory: sessionmaker[Session], email: str) -> int:
    with transaction(factory) as session:
        user = get_user(session, email)
        if user is None:
            raise AuthError(f"no console user {normalise_email(email)!r}")
        rows = session.execute(select(ApiToken).where(ApiToken.user_id == user.id,
                                                      ApiToken.revoked_at.is_(None))).scalars().all()
        for row in rows:
            row.revoked_at = utcnow()
        return len(rows)


# --- CSRF and the signing key ---------------------------------------------------------------
def csrf_token(secret: str, bound_to: str) -> str:
    """A form token bound to one session (or pre-login cookie): HMAC, so nothing is stored.

    A cross-site page can make the browser send our cookies, but it cannot read them or our
    pages, so it cannot compute this value; a POST without it is refused.
    """
    return hmac.new(secret.encode("utf-8"), b"csrf:" + bound_to.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def csrf_ok(secret: str, bound_to: str, presented: str | None) -> bool:
    if not presented or not bound_to:
        return False
    return hmac.compare_digest(csrf_token(secret, bound_to), presented)


def secret_key(console: ConsoleSettings) -> str:
    """The configured signing key, or a random one for this process (with a warning)."""
    if console.secret_key.get_secret_value():
        return console.secret_key.get_secret_value()
    log.warning("console.secret_key is not set (CASECONSULTANT_CONSOLE__SECRET_KEY): using a random "
                "key for this process; sessions will not survive a restart and several console "
                "processes will not share logins")
    return secrets.token_urlsafe(48)
