"""Copies of sent answers in the IMAP Sent folder: saved after SMTP accepts, used to reconcile.

The copy is appended right after the relay accepts the message and before the outbox row is
marked sent.  After a crash the row is left in ``sending``; finding its Message-ID in the Sent
folder then proves it went out.  Not finding it proves nothing (the crash may have come between
the relay's 250 and the append), so such rows go to a human as ``needs_check``.

One IMAP connection is kept between copies (a login and a folder check per answer cost more
than the SMTP conversation itself) and made again, once, when the server has dropped it.
"""

from __future__ import annotations

import imaplib
import threading
from collections.abc import Callable
from typing import TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from consultant.settings import ImapSettings

T = TypeVar("T")
# What a dropped or broken IMAP connection raises.
CONNECTION_ERRORS = (imaplib.IMAP4.abort, imaplib.IMAP4.error, IMAPClientError, OSError, EOFError)


class SentFolder:
    def __init__(self, cfg: ImapSettings) -> None:
        self.cfg = cfg
        self._client: IMAPClient | None = None
        # A Runtime (and its SentFolder) is shared by a thread-pool worker's threads; an IMAP
        # connection carries one command at a time.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.host and self.cfg.sent_folder)

    def _connect(self) -> IMAPClient:
        client = IMAPClient(self.cfg.host, port=self.cfg.port, ssl=self.cfg.ssl, timeout=30)
        client.login(self.cfg.username, self.cfg.password.get_secret_value())
        if not client.folder_exists(self.cfg.sent_folder):
            client.create_folder(self.cfg.sent_folder)
        return client

    def _run(self, command: Callable[[IMAPClient], T]) -> T:
        """``command(client)`` on the kept connection; on a dropped one, reconnect and retry
        once (a repeated APPEND at worst leaves two copies, which reconciling does not mind)."""
        with self._lock:
            for attempt in (1, 2):
                if self._client is None:
                    self._client = self._connect()
                try:
                    return command(self._client)
                except CONNECTION_ERRORS:
                    self._drop()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - the connection is being dropped as broken
                pass

    def save(self, raw: bytes) -> None:
        self._run(lambda c: c.append(self.cfg.sent_folder, raw, flags=[b"\\Seen"]))

    def contains(self, message_id: str) -> bool:
        def search(client: IMAPClient) -> bool:
            client.select_folder(self.cfg.sent_folder, readonly=True)
            return bool(client.search(["HEADER", "Message-ID", message_id]))

        return self._run(search)

    def close(self) -> None:
        with self._lock:
            self._drop()
