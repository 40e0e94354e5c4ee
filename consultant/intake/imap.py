"""IMAP intake: fetch new mail by UID, store it, enqueue it, and only then flag or move it.

The order is the point.  The raw bytes are committed before the task is enqueued, and the
message is flagged/moved only after both; the last processed UID is advanced last of all.  A
crash anywhere therefore means the message is offered again on restart, where the stored copy
is recognised by its hash (no duplicate) and re-enqueued only if it was never processed.
State lives in the database (UIDVALIDITY + last UID), not in \\Seen flags, so another client
reading the mailbox cannot make us miss mail.

Each configured mailbox (``[imap]`` and every ``[[imap.mailboxes]]``) has its own poller, its
own row of state, its own backoff and its own error record (``last_error``, ``failing_since``),
so one failing login delays nobody else, and health can name the mailbox that stopped.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from consultant.db import transaction
from consultant.intake.oauth2 import OAuth2Error, TokenSource
from consultant.intake.store import Location, store_many, store_raw
from consultant.models import ImapState, InboundMail, utcnow
from consultant.settings import ImapSettings

log = logging.getLogger(__name__)

PROCESSED_FLAG = b"$CaseConsultantStored"
FETCH_BATCH = 100
# Errors after which the connection is dropped and re-made with backoff.
CONNECTION_ERRORS = (imaplib.IMAP4.abort, imaplib.IMAP4.error, IMAPClientError, OSError,
                     socket.timeout, EOFError)
# The database going away (restart, failover, a cut connection) is retried the same way: the
# state of the batch in hand is in the database, so nothing is lost by starting it again.
DATABASE_ERRORS = (OperationalError, DBAPIError)
RETRIED_ERRORS = (*CONNECTION_ERRORS, *DATABASE_ERRORS, OAuth2Error)


@dataclass
class PollResult:
    fetched: int = 0
    stored: int = 0
    enqueued: int = 0
    too_large: int = 0


def connect(cfg: ImapSettings, tokens: TokenSource | None = None) -> IMAPClient:
    """Connect and log in (LOGIN, or XOAUTH2 with a token from ``tokens``)."""
    client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.ssl, timeout=60)
    try:
        if cfg.auth == "xoauth2":
            assert tokens is not None
            try:
                client.oauth2_login(cfg.username, tokens.access_token())
            except LoginError:
                # Revoked or expired early: one fresh token, then give up until the backoff.
                tokens.invalidate()
                client.oauth2_login(cfg.username, tokens.access_token())
        else:
            client.login(cfg.username, cfg.password.get_secret_value())
    except BaseException:
        client.shutdown()
        raise
    return client


def _state(session: Session, mailbox: str, folder: str) -> ImapState | None:
    return session.execute(select(ImapState).where(ImapState.mailbox == mailbox,
                                                   ImapState.folder == folder)).scalar_one_or_none()


class ImapPoller:
    """One mailbox folder.  ``enqueue(mail_id)`` hands a stored mail to the workers."""

    def __init__(self, cfg: ImapSettings, factory: sessionmaker[Session],
                 enqueue: Callable[[int], None], max_bytes: int) -> None:
        self.cfg = cfg
        self.factory = factory
        self.enqueue = enqueue
        self.max_bytes = max_bytes
        self.mailbox = cfg.label
        self.tokens = TokenSource(cfg) if cfg.auth == "xoauth2" else None
        self.client: IMAPClient | None = None
        self.uidvalidity: int | None = None  # of the selected folder, this connection
        self.stopping = False
        # Called with the last UID of a batch once its mails are stored and enqueued, just
        # before they are flagged (a seam for crash tests and instrumentation).
        self.before_flag: Callable[[int], None] | None = None

    # -- one pass ---------------------------------------------------------------------------
    def poll_once(self) -> PollResult:
        """Fetch everything new in the folder once (connects and selects if needed)."""
        if self.client is None:
            self.client = connect(self.cfg, self.tokens)
            self.uidvalidity = None
        client = self.client
        if self.uidvalidity is None:
            # SELECT once per connection: on a large Maildir every SELECT makes the server
            # re-scan the folder.  While selected, UIDVALIDITY cannot change under us (the
            # server would have to close the mailbox, which ends the session).
            info = client.select_folder(self.cfg.folder)
            self.uidvalidity = int(info[b"UIDVALIDITY"])
        else:
            client.noop()  # lets the server report (and us see) what arrived since
        uidvalidity = self.uidvalidity
        with transaction(self.factory) as session:
            state = _state(session, self.mailbox, self.cfg.folder)
            if state is None:
                state = ImapState(mailbox=self.mailbox, folder=self.cfg.folder,
                                  uidvalidity=uidvalidity, last_uid=0)
                session.add(state)
            elif state.uidvalidity == 0:
                state.uidvalidity = uidvalidity  # the row was made by a failure record
            elif state.uidvalidity != uidvalidity:
                # UIDs were renumbered: re-scan everything; stored copies are recognised by
                # their hash, so nothing is duplicated.
                log.warning("%s/%s: UIDVALIDITY changed %s -> %s; re-scanning",
                            self.mailbox, self.cfg.folder, state.uidvalidity, uidvalidity)
                state.uidvalidity, state.last_uid = uidvalidity, 0
            state.last_fetch_at = utcnow()
            state.last_error, state.failing_since, state.failures = None, None, 0
            last_uid = state.last_uid
        # O(new mail): ask only for UIDs above the last one processed.  "n:*" always matches
        # the highest UID even when it is below n, hence the filter.
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        result = PollResult()
        for start in range(0, len(uids), FETCH_BATCH):
            self._fetch_batch(uids[start:start + FETCH_BATCH], uidvalidity, result)
        return result

    def _fetch_batch(self, uids: list[int], uidvalidity: int, result: PollResult) -> None:
        """Store and enqueue each mail of the batch, then flag/move them all and advance the UID.

        Each mail is committed and enqueued before anything is flagged; flags and the last UID
        are written once per batch (one IMAP command, one transaction) rather than per mail.
        """
        client = self.client
        assert client is not None
        sizes = client.fetch(uids, ["RFC822.SIZE"])
        small = [u for u in uids if int(sizes.get(u, {}).get(b"RFC822.SIZE", 0)) <= self.max_bytes]
        bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
        # The batch's mails are stored in one transaction (one commit), before any is enqueued.
        fetched = [u for u in uids if bodies.get(u, {}).get(b"BODY[]") is not None]
        stored_by_uid = dict(zip(fetched, store_many(self.factory, [
            (bytes(bodies[u][b"BODY[]"]), self._where(u, uidvalidity)) for u in fetched]),
            strict=True))
        done: list[int] = []
        for uid in uids:
            where = self._where(uid, uidvalidity)
            if uid in bodies:
                if uid not in stored_by_uid:
                    continue  # expunged meanwhile
                stored = stored_by_uid[uid]
            elif uid in sizes:
                # Too large to download: keep the headers and a quarantine record instead.
                head = client.fetch([uid], ["BODY.PEEK[HEADER]"]).get(uid, {}).get(b"BODY[HEADER]", b"")
                stored = store_raw(self.factory, bytes(head), where)
                self._quarantine_large(stored.mail_id, int(sizes[uid][b"RFC822.SIZE"]))
                result.too_large += 1
            else:
                continue
            result.fetched += 1
            result.stored += int(stored.created)
            if stored.needs_processing:
                self.enqueue(stored.mail_id)
                result.enqueued += 1
            done.append(uid)
        if not done:
            return
        if self.before_flag is not None:
            self.before_flag(done[-1])
        self._mark_done(done)
        with transaction(self.factory) as session:
            state = _state(session, self.mailbox, self.cfg.folder)
            assert state is not None
            state.last_uid = max(state.last_uid, max(done))

    def _where(self, uid: int, uidvalidity: int) -> Location:
        return Location("imap", self.mailbox, self.cfg.folder, uidvalidity, uid)

    def _quarantine_large(self, mail_id: int, size: int) -> None:
        with transaction(self.factory) as session:
            mail = session.get(InboundMail, mail_id)
            if mail is not None and mail.disposition is None:
                mail.disposition = "quarantined"
                mail.rule_hits = ["too_large"]
                mail.disposition_reason = (f"message of {size} bytes exceeds the limit of "
                                           f"{self.max_bytes}; only its header was stored")
                mail.processed_at = utcnow()

    def _mark_done(self, uids: list[int]) -> None:
        client = self.client
        assert client is not None
        if self.cfg.processed_folder:
            if not client.folder_exists(self.cfg.processed_folder):
                client.create_folder(self.cfg.processed_folder)
            if client.has_capability("MOVE"):
                client.move(uids, self.cfg.processed_folder)
            else:
                client.copy(uids, self.cfg.processed_folder)
                client.delete_messages(uids)
                client.expunge(uids) if client.has_capability("UIDPLUS") else client.expunge()
        else:
            client.add_flags(uids, [PROCESSED_FLAG])

    # -- the loop ---------------------------------------------------------------------------
    def wait_for_mail(self) -> None:
        """IDLE until the server reports something (or the timeout), else sleep one interval."""
        client = self.client
        assert client is not None
        if self.cfg.idle and client.has_capability("IDLE"):
            client.idle()
            try:
                client.idle_check(timeout=min(self.cfg.idle_timeout, 29 * 60))
            finally:
                client.idle_done()
        else:
            self._sleep(self.cfg.poll_interval)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))

    def record_failure(self, error: str) -> None:
        """Keep the error on this mailbox's state row, for health and the console."""
        try:
            with transaction(self.factory) as session:
                state = _state(session, self.mailbox, self.cfg.folder)
                if state is None:
                    # Never fetched (e.g. the first login fails): UIDVALIDITY 0 means unknown.
                    state = ImapState(mailbox=self.mailbox, folder=self.cfg.folder,
                                      uidvalidity=0, last_uid=0, failures=0)
                    session.add(state)
                state.last_error = error[:1000]
                state.failing_since = state.failing_since or utcnow()
                state.failures = (state.failures or 0) + 1
        except DATABASE_ERRORS as exc:  # the database is what failed: nowhere to write it
            log.warning("IMAP %s: could not record the failure: %s", self.mailbox, exc)

    def disconnect(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:  # noqa: BLE001 - the connection may already be dead
                pass
            self.client = None
            self.uidvalidity = None

    def run_forever(self, on_poll: Callable[[PollResult], None] | None = None) -> None:
        """Poll, IDLE, repeat; reconnect with exponential backoff after any connection error
        (``IMAP4.abort`` during IDLE included: imapclient issue #519) or database error."""
        delay = 1.0
        while not self.stopping:
            try:
                result = self.poll_once()
                if on_poll is not None:
                    on_poll(result)
                delay = 1.0
                self.wait_for_mail()
            except RETRIED_ERRORS as exc:
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.warning("IMAP %s: %s; reconnecting in %.0f s", self.mailbox, error, delay)
                self.disconnect()
                self.record_failure(error)
                self._sleep(delay)
                delay = min(delay * 2, float(self.cfg.max_backoff))
        self.disconnect()
