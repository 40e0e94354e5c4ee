"""Copies of sent answers in the IMAP Sent folder: saved after SMTP accepts, used to reconcile.

The copy is appended right after the relay accepts the message and before the outbox row is
marked sent.  After a crash the row is left in ``sending``; finding its Message-ID in the Sent
folder then proves it went out.  Not finding it proves nothing (the crash may have come between
the relay's 250 and the append), so such rows go to a human as ``needs_check``.
"""

from __future__ import annotations

from imapclient import IMAPClient

from consultant.settings import ImapSettings


class SentFolder:
    def __init__(self, cfg: ImapSettings) -> None:
        self.cfg = cfg

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.host and self.cfg.sent_folder)

    def _client(self) -> IMAPClient:
        client = IMAPClient(self.cfg.host, port=self.cfg.port, ssl=self.cfg.ssl, timeout=30)
        client.login(self.cfg.username, self.cfg.password)
        if not client.folder_exists(self.cfg.sent_folder):
            client.create_folder(self.cfg.sent_folder)
        return client

    def save(self, raw: bytes) -> None:
        with self._client() as client:
            client.append(self.cfg.sent_folder, raw, flags=[b"\\Seen"])

    def contains(self, message_id: str) -> bool:
        with self._client() as client:
            client.select_folder(self.cfg.sent_folder, readonly=True)
            return bool(client.search(["HEADER", "Message-ID", message_id]))
