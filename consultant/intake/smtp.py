"""SMTP intake (aiosmtpd): accept mail for our addresses, store it, then say 250.

The 250 is given only after the raw bytes are committed; if storing fails we answer 451 so the
sending MTA keeps the message and retries (the LMTP runner in Mailman does the same).  Mail for
addresses that are not ours is refused with 550 at RCPT time, before any data is taken.

The database work (``store_raw``) and the enqueue run in a worker thread, not on the event loop:
on the loop, one slow commit (PostgreSQL failing over, SQLite busy) would stall every other
client's conversation.  The number of simultaneous sessions is bounded (``[smtp_in]
max_sessions``); a client beyond it gets ``421`` and retries later, as SMTP clients must.  The
size limit is announced in EHLO (``SIZE``, RFC 1870), so a client can refuse to send a message
that is too big before sending it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from consultant.intake.store import Location, Stored, store_raw

log = logging.getLogger(__name__)


class IntakeHandler:
    def __init__(self, factory: sessionmaker[DbSession], addresses: set[str],
                 enqueue: Callable[[int], None], max_bytes: int) -> None:
        self.factory = factory
        self.addresses = {a.lower() for a in addresses}
        self.enqueue = enqueue
        self.max_bytes = max_bytes

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.lower() not in self.addresses:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):  # only when decode_data=True, which we never set
            raw = raw.encode("utf-8", "surrogateescape")
        if len(raw) > self.max_bytes:
            return "552 5.3.4 Message too big"
        try:
            stored = await asyncio.to_thread(self._store, raw, ",".join(envelope.rcpt_tos))
        except Exception as exc:  # noqa: BLE001 - any storage failure: the sender must retry
            log.exception("SMTP intake could not store a message")
            return f"451 4.3.0 Temporary failure storing the message ({type(exc).__name__})"
        if stored.needs_processing:
            try:
                await asyncio.to_thread(self.enqueue, stored.mail_id)
            except Exception as exc:  # noqa: BLE001 - stored; the sweeper will enqueue it
                log.warning("stored mail %s but could not enqueue it: %s", stored.mail_id, exc)
        return "250 2.0.0 OK stored"

    def _store(self, raw: bytes, recipients: str) -> Stored:
        return store_raw(self.factory, raw, Location("smtp", recipients))


class BoundedSMTP(SMTP):
    """An SMTP session that counts itself against a shared limit of concurrent sessions."""

    def __init__(self, *args: Any, sessions: SessionLimit, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limit = sessions
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._limit.enter():
            # Refused before the greeting, the way busy MTAs do (RFC 5321 3.1: 421 at connect).
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.3.2 Too many connections, try again later\r\n")
            transport.close()
            return
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._limit.leave()
            super().connection_lost(exc)


class SessionLimit:
    """Counts open sessions (all on the event loop's thread, so no lock is needed)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.open = 0
        self.refused = 0

    def enter(self) -> bool:
        if self.open >= self.maximum:
            self.refused += 1
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


class IntakeController(Controller):
    def __init__(self, handler: IntakeHandler, *, max_sessions: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sessions = SessionLimit(max_sessions)

    def factory(self) -> SMTP:
        return BoundedSMTP(self.handler, sessions=self.sessions, **self.SMTP_kwargs)


def start_listener(handler: IntakeHandler, host: str, port: int, max_sessions: int = 20) -> IntakeController:
    """Start the listener in its own thread; call ``.stop()`` on the result to end it."""
    controller = IntakeController(handler, max_sessions=max_sessions, hostname=host, port=port,
                                  data_size_limit=handler.max_bytes, decode_data=False)
    controller.start()
    return controller
