"""Raw bytes → a read-only view of a message, with bounded cost on hostile input.

Mail is parsed from bytes with ``email.policy.default`` and never decoded first: decoding
before parsing corrupts 8-bit bodies and charsets (django-helpdesk's ``unicode_escape``
repair is the cautionary tale).  Two corpus mails show why the guards below exist:
a 3 MB endlessly-nested message takes seconds, and a To header of ~8,000 encoded words drives
the stdlib header parser to ~425 MiB.  So headers are size-checked on the raw bytes before the
full parse, and any exception in the parser becomes a ``MailParseError`` with a reason that
the caller records as a quarantine disposition.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

MAX_HEADER_BYTES = 64 * 1024
MAX_SINGLE_HEADER_BYTES = 16 * 1024
MAX_PARTS = 200


class MailParseError(Exception):
    """The message cannot be parsed safely; ``str(exc)`` is the quarantine reason."""


@dataclass
class MailView:
    """What the pipeline needs from a message; built once per mail."""

    message: EmailMessage
    message_id: str | None
    from_addr: str | None
    from_name: str
    to_addrs: list[str]
    subject: str
    in_reply_to: list[str]
    references: list[str]
    text: str
    html: str | None
    attachments: list[dict[str, object]] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    _headers: dict[str, str] = field(default_factory=dict, repr=False)

    def header(self, name: str) -> str:
        """A header's decoded value ('' if absent), parsed once: with ``policy.default`` every
        ``message.get`` parses the header again, and the rules ask for the same ones often."""
        key = name.lower()
        if key not in self._headers:
            self._headers[key] = _header_str(self.message, name)
        return self._headers[key]


def raw_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _header_block(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        pos = raw.find(sep)
        if pos != -1:
            return raw[:pos]
    return raw


def check_header_limits(raw: bytes) -> None:
    """Reject messages whose header block would make the stdlib parser pathological."""
    block = _header_block(raw)
    if len(block) > MAX_HEADER_BYTES:
        raise MailParseError(f"header block too large ({len(block)} bytes > {MAX_HEADER_BYTES})")
    current = 0
    for line in block.splitlines():
        if line[:1] in (b" ", b"\t"):
            current += len(line)
        else:
            current = len(line)
        if current > MAX_SINGLE_HEADER_BYTES:
            name = line.split(b":", 1)[0][:40].decode("ascii", "replace")
            raise MailParseError(f"header field too large (> {MAX_SINGLE_HEADER_BYTES} bytes): {name}")


_MSGID_RE = re.compile(r"<[^<>\s]+>")


def message_ids_in(value: str | None) -> list[str]:
    """All ``<id>`` tokens of a Message-ID / In-Reply-To / References header value."""
    if not value:
        return []
    return _MSGID_RE.findall(value)


@dataclass(frozen=True)
class QuickHeaders:
    message_id: str | None = None
    from_addr: str | None = None
    subject: str | None = None
    references: tuple[str, ...] = ()


def quick_headers(raw: bytes) -> QuickHeaders:
    """Message-ID, From, Subject and References without a full parse (intake, threading).

    Uses the compat32 policy on the header block only: it does not decode encoded words,
    so it is cheap and cannot blow up on hostile headers; anything odd simply yields None.
    """
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(_header_block(raw)[:MAX_HEADER_BYTES],
                                                             headersonly=True)
        ids = message_ids_in(str(msg.get("Message-ID", "") or ""))
        _, addr = parseaddr(str(msg.get("From", "") or ""))
        subject = without_nul(str(msg.get("Subject", "") or ""))[:998]
        references = message_ids_in(str(msg.get("References", "") or ""))
    except Exception:  # noqa: BLE001 - intake must store the bytes whatever they are
        return QuickHeaders()
    return QuickHeaders(ids[0] if ids else None, addr.lower() or None, subject or None,
                        tuple(references))


def without_nul(text: str) -> str:
    """Text safe to store: decoded mail can carry NUL characters, which PostgreSQL text columns
    reject (found on a corpus mail whose ISO-2022-JP subject decodes to one)."""
    return text.replace("\x00", "") if "\x00" in text else text


def _safe_content(part: Message) -> str:
    """Decoded text of a part; unknown or lying charsets fall back instead of raising."""
    return without_nul(_decoded(part))


def _decoded(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        return content if isinstance(content, str) else ""
    except (LookupError, UnicodeError, AssertionError, ValueError):
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return ""
        for charset in ("utf-8", "latin-1"):
            try:
                return payload.decode(charset)
            except UnicodeDecodeError:
                continue
        return ""


def _header_str(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - a malformed header reads as empty, not a crash
        return ""
    return "" if value is None else without_nul(str(value))


def parse_mail(raw: bytes) -> MailView:
    """Parse raw bytes into a :class:`MailView`; raise :class:`MailParseError` if unsafe."""
    check_header_limits(raw)
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        parts = list(msg.walk())
    except Exception as exc:  # noqa: BLE001 - e.g. UnicodeDecodeError on bad ISO-2022-JP
        raise MailParseError(f"unparseable message: {type(exc).__name__}: {exc}") from exc
    if len(parts) > MAX_PARTS:
        raise MailParseError(f"too many MIME parts ({len(parts)} > {MAX_PARTS})")
    assert isinstance(msg, EmailMessage)

    text_body, html_body = "", None
    try:
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
    except Exception:  # noqa: BLE001
        plain = html = None
    if plain is not None:
        text_body = _safe_content(plain)
    if html is not None:
        html_body = _safe_content(html)
    attachments: list[dict[str, object]] = []
    for part in parts:
        if part.is_multipart() or part in (plain, html):
            continue
        disposition = part.get_content_disposition()
        if disposition == "attachment" or part.get_filename() or not part.get_content_maintype() == "text":
            try:
                payload = part.get_payload(decode=True)
            except Exception:  # noqa: BLE001
                payload = None
            attachments.append({
                "filename": part.get_filename() or "",
                "content_type": part.get_content_type(),
                "size": len(payload) if isinstance(payload, bytes) else 0,
            })

    from_header = _header_str(msg, "From")
    name, addr = parseaddr(from_header)
    try:
        to_addrs = [a.lower() for _, a in getaddresses(
            [_header_str(msg, "To"), _header_str(msg, "Cc")]) if a]
    except Exception:  # noqa: BLE001
        to_addrs = []
    ids = message_ids_in(_header_str(msg, "Message-ID"))
    return MailView(
        message=msg,
        message_id=ids[0] if ids else None,
        from_addr=addr.lower() if "@" in addr else None,
        from_name=name,
        to_addrs=to_addrs,
        subject=" ".join(_header_str(msg, "Subject").split()),
        in_reply_to=message_ids_in(_header_str(msg, "In-Reply-To")),
        references=message_ids_in(_header_str(msg, "References")),
        text=text_body,
        html=html_body,
        attachments=attachments,
        defects=[type(d).__name__ for d in msg.defects],
    )
