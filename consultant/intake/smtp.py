"""SMTP intake (aiosmtpd): accept mail for our addresses, store it, then say 250.

The 250 is given only after the raw bytes are committed; if storing fails we answer 451 so the
sending MTA keeps the message and retries (the LMTP runner in Mailman does the same).  Mail for
addresses that are not ours is refused with 550 at RCPT time, before any data is taken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from consultant.intake.store import Location, store_raw

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
            # store_raw does blocking database work; the event loop serves one client at a
            # time here, which is fine at intake rates and keeps the commit-then-250 order.
            stored = store_raw(self.factory, raw, Location("smtp", ",".join(envelope.rcpt_tos)))
        except Exception as exc:  # noqa: BLE001 - any storage failure: the sender must retry
            log.exception("SMTP intake could not store a message")
            return f"451 4.3.0 Temporary failure storing the message ({type(exc).__name__})"
        if stored.needs_processing:
            try:
                self.enqueue(stored.mail_id)
            except Exception as exc:  # noqa: BLE001 - stored; the sweeper will enqueue it
                log.warning("stored mail %s but could not enqueue it: %s", stored.mail_id, exc)
        return "250 2.0.0 OK stored"


def start_listener(handler: IntakeHandler, host: str, port: int) -> Controller:
    """Start the listener in its own thread; call ``.stop()`` on the result to end it."""
    controller = Controller(handler, hostname=host, port=port,
                            data_size_limit=handler.max_bytes + 65536,
                            decode_data=False)
    controller.start()
    return controller
