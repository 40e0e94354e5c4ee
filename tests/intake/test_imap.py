"""The IMAP poller against a real IMAP server (Dovecot; pymap with TEST_IMAP_SERVER=pymap)."""

from __future__ import annotations

import threading
import time

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from consultant.intake.imap import PROCESSED_FLAG, ImapPoller
from consultant.models import ImapState, InboundMail
from tests.conftest import question_mail
from tests.servers import wait_for


def client_for(server, user):  # type: ignore[no-untyped-def]
    client = IMAPClient(server.host, port=server.port, ssl=False)
    client.login(user, server.users[user])
    return client


def make_poller(settings, factory, server, user, enqueued, **imap):  # type: ignore[no-untyped-def]
    cfg = settings.imap
    cfg.host, cfg.port, cfg.ssl = server.host, server.port, False
    cfg.username, cfg.password = user, server.users[user]
    cfg.poll_interval, cfg.idle_timeout, cfg.max_backoff = 1, 5, 2
    for key, value in imap.items():
        setattr(cfg, key, value)
    return ImapPoller(cfg, factory, enqueued.append, settings.service.max_message_bytes)


def count_mail(factory) -> int:  # type: ignore[no-untyped-def]
    with factory() as s:
        return s.execute(select(func.count(InboundMail.id))).scalar_one()


@pytest.fixture
def user(request, imap_server):  # type: ignore[no-untyped-def]
    """A fresh mailbox per test: empty every folder of one of the server's users."""
    names = [u for u in imap_server.users if u != "consult"]
    name = names[hash(request.node.name) % len(names)]
    with client_for(imap_server, name) as c:
        for _flags, _delim, folder in c.list_folders():
            c.select_folder(folder)
            c.delete_messages(c.search("ALL"))
            c.expunge()
            if folder != "INBOX":
                c.unselect_folder()
                c.delete_folder(folder)
    return name


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_new_uids_only_stored_once_then_flagged(settings, factory, imap_server, user):
    enqueued: list[int] = []
    poller = make_poller(settings, factory, imap_server, user, enqueued)
    with client_for(imap_server, user) as c:
        for i in range(3):
            c.append("INBOX", question_mail(subject=f"q{i}"))
    result = poller.poll_once()
    assert (result.fetched, result.stored, result.enqueued) == (3, 3, 3)
    assert count_mail(factory) == 3 and len(enqueued) == 3
    with client_for(imap_server, user) as c:
        c.select_folder("INBOX")
        assert len(c.search(["KEYWORD", PROCESSED_FLAG.decode()])) == 3
        assert c.search(["SEEN"]) == []  # BODY.PEEK: the human's \Seen state is untouched
        c.append("INBOX", question_mail(subject="q3"))
        # Emptying the mailbox does not reset UIDs: an earlier test in the run may have used
        # this user's INBOX, so the newest UID is asked of the server, not assumed to be 4.
        newest = max(c.search(["ALL"]))
    again = poller.poll_once()
    assert (again.fetched, again.stored) == (1, 1)  # only the new UID was fetched
    with factory() as s:
        state = s.execute(select(ImapState)).scalar_one()
        assert state.last_uid == newest or imap_server.kind == "pymap"
        mail = s.execute(select(InboundMail).order_by(InboundMail.id)).scalars().first()
        assert mail.source == "imap" and mail.uid is not None and mail.uidvalidity == state.uidvalidity
    poller.disconnect()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_move_to_processed_folder(settings, factory, imap_server, user):
    poller = make_poller(settings, factory, imap_server, user, [], processed_folder="Processed")
    with client_for(imap_server, user) as c:
        c.append("INBOX", question_mail())
    poller.poll_once()
    with client_for(imap_server, user) as c:
        assert c.select_folder("INBOX")[b"EXISTS"] == 0
        assert c.select_folder("Processed")[b"EXISTS"] == 1
    poller.disconnect()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_uidvalidity_change_rescans_without_duplicates(settings, factory, imap_server, user):
    if imap_server.kind != "dovecot":
        pytest.skip("needs a server that renumbers a re-created folder")
    raws = [question_mail(subject=f"v{i}") for i in range(2)]
    poller = make_poller(settings, factory, imap_server, user, [], folder="Cases")
    with client_for(imap_server, user) as c:
        c.create_folder("Cases")
        for raw in raws:
            c.append("Cases", raw)
    poller.poll_once()
    poller.disconnect()
    with client_for(imap_server, user) as c:
        c.rename_folder("Cases", "Old")
        c.create_folder("Cases")  # a new folder: new UIDVALIDITY, UIDs from 1 again
        for raw in [*raws, question_mail(subject="new")]:
            c.append("Cases", raw)
    result = poller.poll_once()
    assert (result.fetched, result.stored) == (3, 1)
    assert count_mail(factory) == 3
    poller.disconnect()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_oversized_mail_is_quarantined_without_download(settings, factory, imap_server, user):
    settings.service.max_message_bytes = 2000
    poller = make_poller(settings, factory, imap_server, user, [])
    poller.max_bytes = 2000
    with client_for(imap_server, user) as c:
        c.append("INBOX", question_mail(body="x" * 5000))
    result = poller.poll_once()
    assert result.too_large == 1
    with factory() as s:
        mail = s.execute(select(InboundMail)).scalar_one()
        assert mail.disposition == "quarantined" and mail.rule_hits == ["too_large"]
        assert mail.size < 2000 and b"Subject:" in mail.raw  # only the header was fetched
    poller.disconnect()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_idle_picks_up_mail_and_survives_a_dropped_connection(settings, factory, imap_server, user):
    enqueued: list[int] = []
    poller = make_poller(settings, factory, imap_server, user, enqueued)
    thread = threading.Thread(target=poller.run_forever, daemon=True)
    thread.start()
    try:
        wait_for(lambda: poller.client is not None, what="poller connected")
        with client_for(imap_server, user) as c:
            start = time.monotonic()
            c.append("INBOX", question_mail(subject="idle 1"))
            wait_for(lambda: len(enqueued) == 1, timeout=10, what="IDLE to deliver the first mail")
            first_latency = time.monotonic() - start
            # Cut the poller's connection under it (as a NAT timeout or server restart would).
            poller.client._imap.sock.shutdown(2)  # type: ignore[union-attr]
            c.append("INBOX", question_mail(subject="idle 2"))
            wait_for(lambda: len(enqueued) == 2, timeout=15, what="mail after reconnect")
        assert first_latency < 10
        assert count_mail(factory) == 2
    finally:
        poller.stopping = True
        thread.join(timeout=10)
