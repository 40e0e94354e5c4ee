"""Several mailboxes, each with its own state, backoff and alert; XOAUTH2 with token refresh.

The OAuth2 provider's token service cannot run here, so a small local one stands in for it
(the RFC 6749 refresh grant, plus the RFC 7662 introspection Dovecot's oauth2 passdb calls);
the IMAP server and its OAuth2 check are the real Dovecot.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from imapclient import IMAPClient
from sqlalchemy import select, update

from consultant.intake.health import mailbox_health
from consultant.intake.imap import ImapPoller
from consultant.models import ImapState, InboundMail, utcnow
from consultant.settings import ConfigError, load_settings
from tests.conftest import question_mail
from tests.servers import empty_mailbox, start_dovecot, wait_for

on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_mailboxes_are_read_from_the_config_with_secrets_from_the_environment(tmp_path):
    config = tmp_path / "cc.toml"
    config.write_text(
        '[imap]\nhost = "imap.example.com"\nusername = "main"\nalert_after_minutes = 15\n'
        '[[imap.mailboxes]]\nusername = "billing"\npassword_env = "BILLING_PW"\nfolder = "Coding"\n'
        '[[imap.mailboxes]]\nname = "m365"\nhost = "outlook.office365.com"\nusername = "c@x.example"\n'
        'auth = "xoauth2"\noauth2_token_url = "https://login.example/token"\n'
        'oauth2_refresh_token_env = "M365_REFRESH"\n')
    env = {"BILLING_PW": "s3cret", "M365_REFRESH": "r1"}
    boxes = load_settings(config, environ=env).imap.all_mailboxes(env)
    assert [(b.label, b.folder, b.password.get_secret_value(), b.alert_after_minutes) for b in boxes] == [
        ("main@imap.example.com", "INBOX", "", 15), ("billing@imap.example.com", "Coding", "s3cret", 15),
        ("m365", "INBOX", "", 15)]
    assert boxes[2].oauth2_refresh_token.get_secret_value() == "r1" and boxes[2].auth == "xoauth2"

    for bad, message in [('[[imap.mailboxes]]\nhost = "h"\nusername = "u"\npasword = "x"\n', "unknown key"),
                         ('[[imap.mailboxes]]\nhost = "h"\nusername = "u"\npassword_env = "NOPE"\n', "NOPE"),
                         ('[[imap.mailboxes]]\nhost = "h"\nusername = "u"\n'
                          '[[imap.mailboxes]]\nhost = "h"\nusername = "u"\n', "configured twice"),
                         ('[[imap.mailboxes]]\nhost = "h"\nusername = "u"\nauth = "xoauth2"\n', "oauth2_token_url")]:
        config.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_settings(config, environ={})


@on_sqlite
def test_each_mailbox_is_alerted_after_its_own_alert_after_minutes(settings, factory):
    settings.imap.host, settings.imap.username, settings.imap.alert_after_minutes = "h", "main", 30
    settings.imap.mailboxes = [{"username": "urgent", "alert_after_minutes": 5}]
    ten_minutes_ago = utcnow() - timedelta(minutes=10)
    with factory() as s, s.begin():
        for label in ("main@h", "urgent@h"):
            s.add(ImapState(mailbox=label, folder="INBOX", uidvalidity=1, last_fetch_at=ten_minutes_ago))
    with factory() as s:
        health = {h.mailbox: h.status for h in mailbox_health(s, settings.imap)}
    assert health == {"main@h": "ok", "urgent@h": "stale"}


def _poll_in_thread(poller: ImapPoller) -> threading.Thread:
    thread = threading.Thread(target=poller.run_forever, daemon=True)
    thread.start()
    return thread


@on_sqlite
def test_one_failing_login_does_not_stop_the_other_mailboxes(settings, factory, imap_server):
    for user in ("alice", "bob"):
        empty_mailbox(imap_server, user)
    settings.imap.alert_after_minutes = 30
    base = {"host": imap_server.host, "port": imap_server.port, "ssl": False, "idle": False,
            "poll_interval": 1, "max_backoff": 1}
    settings.imap.mailboxes = [
        {"username": "alice", "password": imap_server.users["alice"], **base},
        {"username": "bob", "password": "wrong password", **base},
        {"username": "bob", "password": imap_server.users["bob"], "name": "bob-ok", **base},
    ]
    boxes = settings.imap.all_mailboxes()
    pollers = [ImapPoller(box, factory, lambda _id: None, 10_000_000) for box in boxes]
    threads = [_poll_in_thread(p) for p in pollers]
    try:
        for user in ("alice", "bob"):
            with IMAPClient(imap_server.host, port=imap_server.port, ssl=False) as c:
                c.login(user, imap_server.users[user])
                c.append("INBOX", question_mail(sender=f"{user}-client@clinic.test"))

        def stored() -> bool:
            with factory() as s:
                return len(s.execute(select(InboundMail.id)).all()) == 2
        wait_for(stored, timeout=30, what="both good mailboxes to store their mail")
        wait_for(lambda: _state(factory, "bob@" + imap_server.host) is not None and
                 _state(factory, "bob@" + imap_server.host).failures >= 2,
                 timeout=30, what="the failing mailbox to record its failures")
    finally:
        for poller in pollers:
            poller.stopping = True
        for thread in threads:
            thread.join(timeout=10)
    bad = _state(factory, "bob@" + imap_server.host)
    assert bad is not None and bad.last_fetch_at is None
    assert "LoginError" in (bad.last_error or "")
    with factory() as s:
        health = {h.mailbox: h.status for h in mailbox_health(s, settings.imap)}
    assert health == {"alice@" + imap_server.host: "ok", "bob@" + imap_server.host: "ok", "bob-ok": "ok"}
    # Failing for longer than alert_after_minutes: that mailbox, and only that one, is stale.
    with factory() as s, s.begin():
        s.execute(update(ImapState).where(ImapState.mailbox == "bob@" + imap_server.host)
                  .values(failing_since=utcnow() - timedelta(minutes=31)))
    with factory() as s:
        health = {h.mailbox: h.status for h in mailbox_health(s, settings.imap)}
    assert health["bob@" + imap_server.host] == "stale"
    assert health["alice@" + imap_server.host] == health["bob-ok"] == "ok"


def _state(factory, mailbox: str) -> ImapState | None:  # type: ignore[no-untyped-def]
    with factory() as s:
        return s.execute(select(ImapState).where(ImapState.mailbox == mailbox)).scalar_one_or_none()


class TokenService:
    """The provider's token endpoint (refresh grant) and introspection, in memory."""

    def __init__(self, refresh_token: str, user: str, lifetime: int) -> None:
        self.refresh_token, self.user, self.lifetime = refresh_token, user, lifetime
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.introspections = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                if self.path == "/token":
                    if form.get("grant_type") != ["refresh_token"] or \
                            form.get("refresh_token") != [service.refresh_token]:
                        return self._json(400, {"error": "invalid_grant"})
                    token = f"access-{len(service.issued) + 1}"
                    service.issued.append(token)
                    return self._json(200, {"access_token": token, "token_type": "Bearer",
                                            "expires_in": service.lifetime})
                if self.path == "/introspect":
                    service.introspections += 1
                    token = form.get("token", [""])[0]
                    active = token in service.issued and token not in service.revoked
                    return self._json(200, {"active": active, "username": service.user} if active
                                      else {"active": False})
                return self._json(404, {})

            def _json(self, code: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def oauth_imap():  # type: ignore[no-untyped-def]
    tokens = TokenService("refresh-1", "carol", lifetime=61)  # refreshed after ~1 s (60 s margin)
    server = start_dovecot(["carol"], oauth2_introspection_url=tokens.url + "/introspect")
    yield server, tokens
    server.stop()
    tokens.stop()


@on_sqlite
def test_xoauth2_login_with_token_refresh_on_dovecot(settings, factory, oauth_imap):
    server, tokens = oauth_imap
    with IMAPClient(server.host, port=server.port, ssl=False) as c:
        c.login("carol", server.users["carol"])
        c.append("INBOX", question_mail(subject="first"))
    settings.imap.mailboxes = [{
        "name": "carol-oauth", "host": server.host, "port": server.port, "ssl": False,
        "username": "carol", "auth": "xoauth2", "oauth2_token_url": tokens.url + "/token",
        "oauth2_client_id": "cc", "oauth2_refresh_token": "refresh-1"}]
    cfg, = settings.imap.all_mailboxes()
    poller = ImapPoller(cfg, factory, lambda _id: None, 10_000_000)
    assert poller.poll_once().stored == 1
    assert tokens.issued == ["access-1"] and tokens.introspections >= 1
    poller.disconnect()

    time.sleep(1.1)  # the token is now within the refresh margin: a new one is fetched
    with IMAPClient(server.host, port=server.port, ssl=False) as c:
        c.login("carol", server.users["carol"])
        c.append("INBOX", question_mail(subject="second"))
    assert poller.poll_once().stored == 1
    assert tokens.issued == ["access-1", "access-2"]
    poller.disconnect()

    # The provider revokes the token early: the login is refused once, a fresh token works.
    tokens.lifetime = 3600
    poller.tokens.invalidate()  # type: ignore[union-attr]
    poller.poll_once()
    poller.disconnect()
    tokens.revoked.add(tokens.issued[-1])
    with IMAPClient(server.host, port=server.port, ssl=False) as c:
        c.login("carol", server.users["carol"])
        c.append("INBOX", question_mail(subject="third"))
    assert poller.poll_once().stored == 1
    assert len(tokens.issued) == 4
    poller.disconnect()

    # A refresh token the provider no longer accepts: a clear error, recorded on the mailbox.
    tokens.refresh_token = "rotated-away"
    poller.tokens.invalidate()  # type: ignore[union-attr]
    poller.stopping = False
    thread = threading.Thread(target=poller.run_forever, daemon=True)
    thread.start()
    wait_for(lambda: (_state(factory, "carol-oauth") or ImapState(failures=0)).failures >= 1,
             timeout=20, what="the refresh failure to be recorded")
    poller.stopping = True
    thread.join(timeout=10)
    state = _state(factory, "carol-oauth")
    assert state is not None and "invalid_grant" in (state.last_error or "")
