"""XOAUTH2 access tokens for IMAP (Gmail, Microsoft 365): got with a refresh token, cached
until shortly before they expire, refreshed again when the server refuses one.

The token endpoint is the provider's (``https://oauth2.googleapis.com/token``,
``https://login.microsoftonline.com/TENANT/oauth2/v2.0/token``); the exchange is the plain
RFC 6749 §6 refresh grant, so any endpoint that speaks it works (the tests run a local one
beside Dovecot's oauth2 passdb).  The client secret and refresh token are secrets: they come
from the environment (``*_env`` keys, see settings), never from a committed file.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from consultant.settings import ImapSettings

REFRESH_MARGIN_SECONDS = 60


class OAuth2Error(Exception):
    """The token endpoint refused or failed; the message names the endpoint and its answer."""


class TokenSource:
    """Access tokens for one mailbox (one instance per poller, shared by its reconnects)."""

    def __init__(self, cfg: ImapSettings, timeout: float = 30.0) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self._token = ""
        self._expires_at = 0.0
        self._refresh_token = cfg.oauth2_refresh_token.get_secret_value()
        self._lock = threading.Lock()
        self.refreshes = 0

    def access_token(self) -> str:
        with self._lock:
            if not self._token or time.monotonic() >= self._expires_at - REFRESH_MARGIN_SECONDS:
                self._refresh()
            return self._token

    def invalidate(self) -> None:
        """The server refused the token (revoked, or expired early): get a new one next time."""
        with self._lock:
            self._token = ""

    def _refresh(self) -> None:
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token,
                "client_id": self.cfg.oauth2_client_id}
        if self.cfg.oauth2_client_secret.get_secret_value():
            form["client_secret"] = self.cfg.oauth2_client_secret.get_secret_value()
        request = urllib.request.Request(
            self.cfg.oauth2_token_url, data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - configured URL
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            raise OAuth2Error(f"token refresh at {self.cfg.oauth2_token_url} refused: "
                              f"HTTP {exc.code} {detail}") from exc
        except (OSError, ValueError) as exc:
            raise OAuth2Error(f"token refresh at {self.cfg.oauth2_token_url} failed: {exc}") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise OAuth2Error(f"token refresh at {self.cfg.oauth2_token_url}: no access_token in the answer")
        self._token = str(token)
        self._expires_at = time.monotonic() + float(body.get("expires_in", 3600))
        # Some providers rotate the refresh token; keep using the newest one in this process.
        self._refresh_token = str(body.get("refresh_token") or self._refresh_token)
        self.refreshes += 1
