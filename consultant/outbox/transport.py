"""Where outbound bytes go: an SMTP relay (connection reused), or a local Maildir (demo).

Errors are sorted into temporary (retry later) and permanent (record on the case) the way
Mailman's outgoing runner does: 4xx replies and connection trouble are temporary, 5xx replies
are permanent.
"""

from __future__ import annotations

import mailbox
import smtplib
import ssl
from pathlib import Path
from typing import Protocol

from consultant.settings import SmtpOutSettings


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


class Transport(Protocol):
    def send(self, raw: bytes, sender: str, recipient: str) -> None: ...

    def close(self) -> None: ...


class SmtpTransport:
    """SMTP submission with one connection reused across messages."""

    def __init__(self, cfg: SmtpOutSettings) -> None:
        self.cfg = cfg
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        try:
            if cfg.ssl:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                                      context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
                if cfg.starttls:
                    conn.starttls(context=ssl.create_default_context())
            if cfg.username:
                conn.login(cfg.username, cfg.password.get_secret_value())
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentFailure(f"SMTP login to {cfg.host}:{cfg.port} refused: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"SMTP connect to {cfg.host}:{cfg.port} failed: {exc}") from exc
        return conn

    def send(self, raw: bytes, sender: str, recipient: str) -> None:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                refused = self._conn.sendmail(sender, [recipient], raw)
            except smtplib.SMTPServerDisconnected as exc:
                # A reused connection may have timed out on the server side: reconnect once.
                self._conn = None
                if attempt == 2:
                    raise TemporaryFailure(f"SMTP server disconnected: {exc}") from exc
                continue
            except smtplib.SMTPRecipientsRefused as exc:
                code, msg = next(iter(exc.recipients.values()))
                raise _by_code(code, f"recipient {recipient} refused: {code} {msg!r}") from exc
            except smtplib.SMTPResponseException as exc:
                self.close()
                raise _by_code(exc.smtp_code, f"SMTP {exc.smtp_code} {exc.smtp_error!r}") from exc
            except (TimeoutError, OSError, smtplib.SMTPException) as exc:
                self.close()
                raise TemporaryFailure(f"SMTP send failed: {exc}") from exc
            if refused:
                code, msg = next(iter(refused.values()))
                raise _by_code(code, f"recipient {recipient} refused: {code} {msg!r}")
            return

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._conn = None


def _by_code(code: int, text: str) -> Exception:
    return TemporaryFailure(text) if 400 <= code < 500 else PermanentFailure(text)


class MaildirTransport:
    """Outbound mail captured in a Maildir: nothing leaves the machine (demo, no relay)."""

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.box = mailbox.Maildir(path, create=True)
        for sub in ("tmp", "new", "cur"):  # a pre-existing empty folder lacks these
            Path(path, sub).mkdir(parents=True, exist_ok=True)

    def send(self, raw: bytes, sender: str, recipient: str) -> None:
        try:
            self.box.add(raw)
        except OSError as exc:
            raise TemporaryFailure(f"cannot write to Maildir {self.box._path}: {exc}") from exc

    def contains(self, message_id: str) -> bool:
        needle = message_id.encode()
        for key in self.box.iterkeys():
            with self.box.get_file(key) as fh:
                head = fh.read(65536)
            if needle in head:
                return True
        return False

    def close(self) -> None:
        pass


def make_transport(cfg: SmtpOutSettings) -> Transport:
    if cfg.maildir:
        return MaildirTransport(cfg.maildir)
    if not cfg.host:
        raise PermanentFailure("no outbound mail configured: set [smtp_out] host or maildir")
    return SmtpTransport(cfg)
