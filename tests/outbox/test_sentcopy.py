"""The Sent copy over one kept IMAP connection, made again when the server has dropped it."""

from __future__ import annotations

import socket
from email.message import EmailMessage
from email.utils import make_msgid

from consultant.outbox.sentcopy import SentFolder
from consultant.settings import ImapSettings


def _message(message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "consult@cc.test", "coder@clinic.test", "Re: q"
    msg["Message-ID"] = message_id
    msg.set_content("The answer.\n")
    return msg.as_bytes()


def test_copies_share_one_connection_and_survive_a_dropped_one(imap_server):  # type: ignore[no-untyped-def]
    user = "erin"
    folder = SentFolder(ImapSettings(host=imap_server.host, port=imap_server.port, ssl=False,
                                     username=user, password=imap_server.users[user],
                                     sent_folder="Sent"))
    first, second, third = (make_msgid(domain="cc.test") for _ in range(3))
    try:
        folder.save(_message(first))
        kept = folder._client
        folder.save(_message(second))
        assert folder._client is kept  # no new login per copy
        # The server (or a NAT) drops the idle connection: the next copy reconnects once.
        kept._imap.sock.shutdown(socket.SHUT_RDWR)
        folder.save(_message(third))
        assert folder._client is not kept
        assert all(folder.contains(m) for m in (first, second, third))
        assert not folder.contains(make_msgid(domain="cc.test"))
    finally:
        folder.close()
    assert folder._client is None
