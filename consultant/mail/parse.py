"""Raw bytes → a read-only view of a message, with bounded cost on hostile input.

Mail is parsed from bytes with ``email.policy.default`` (each header parsed once per message:
``_HeadersParsedOnce``) and never decoded first: decoding
before parsing corrupts 8-bit bodies and charsets (django-helpdesk's ``unicode_escape``
repair is the cautionary tale).  Two corpus mails show why the guards below exist:
a 3 MB endlessly-nested message takes seconds, and a To header of ~8,000 encoded words drives
the stdlib header parser to ~425 MiB.  So headers and MIME parts are counted on the raw bytes
before the full parse (``guards``), and any exception in the parser becomes a
``MailParseError`` with a reason that the caller records as a quarantine disposition.  Bodies
longer than the pipeline reads are cut at a line or sentence end, and the view says so
(``shortened``) so the case can tell the consultant; the stored raw mail stays whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parseaddr
from typing import Any

from consultant.mail.guards import (
    MAX_HEADER_BYTES,
    MAX_PARTS,
    MailParseError,
    check_header_limits,
    check_part_limits,
    repair_headers,
    split_header_block,
)
from consultant.mail.tnef import read_tnef

# What the pipeline reads of a body (the raw mail is kept whole).  A real coding question is a
# few thousand characters; drafting costs ~20 ms of CPU per 1,000 characters of dense code
# questions (measured by tests/fuzz), so this bounds a mail's processing well under 2 s.
MAX_TEXT_CHARS = 50_000
# HTML is converted to text later; markup is several times longer than its text.
MAX_HTML_CHARS = 4 * MAX_TEXT_CHARS
MAX_ATTACHMENTS = 50
__all__ = ["MAX_PARTS", "MailParseError", "MailView", "check_header_limits", "parse_mail",
           "quick_headers", "raw_sha256", "safe_content", "shorten"]


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
    # What was mended before parsing (see guards.repair_headers), and which bodies were cut:
    # (content type, characters before, characters kept).
    repairs: list[str] = field(default_factory=list)
    shortened: list[tuple[str, int, int]] = field(default_factory=list)
    _headers: dict[str, str] = field(default_factory=dict, repr=False)

    def header(self, name: str) -> str:
        """A header's decoded value ('' if absent), kept once made: the rules ask for the same
        headers often (the policy parses each header once; this keeps the decoded text)."""
        key = name.lower()
        if key not in self._headers:
            self._headers[key] = _header_str(self.message, name)
        return self._headers[key]


class _HeadersParsedOnce(EmailPolicy):
    """``email.policy.default``, except that a header value is parsed once per message.

    ``policy.default`` stores each header as its source text and parses it again on every
    read: the parser itself reads Content-Type several times per part, and ``get_body``,
    ``walk``-based rules, bounce reading and redaction read it again, so the corpus' mails
    had their Content-Type headers parsed ~40 times each (in a profile of process_mail over
    the corpus, header parsing was over a quarter of its time; parse 7.2 -> 3.9 ms per mail).  The parsed header objects are immutable (``str``
    subclasses), so handing the same one out again returns exactly what a fresh parse would;
    the whole corpus parses to identical headers and bodies either way.  The cache belongs to
    one message's policy (:func:`_policy`), so it lives and dies with that message.
    """

    header_cache: dict[tuple[str, str], object] | None = None

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name") or self.header_cache is None:
            return super().header_fetch_parse(name, value)
        key = (name, value)
        parsed = self.header_cache.get(key)
        if parsed is None:
            parsed = self.header_cache[key] = super().header_fetch_parse(name, value)
        return parsed


_BASE_POLICY = _HeadersParsedOnce()


def _policy() -> EmailPolicy:
    """A fresh policy (with its own header cache) for parsing one message."""
    # typeshed lists only EmailPolicy's own attributes as clone()'s keywords; clone takes any
    # attribute the class has, header_cache included.
    return _BASE_POLICY.clone(header_cache={})  # type: ignore[call-arg]


def raw_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


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
        msg = BytesParser(policy=policy.compat32).parsebytes(split_header_block(raw)[0][:MAX_HEADER_BYTES],
                                                             headersonly=True)
        # Every value is stored: cleaned of NULs and raw 8-bit bytes (see storable_text).
        ids = message_ids_in(storable_text(str(msg.get("Message-ID", "") or "")))
        _, addr = parseaddr(storable_text(str(msg.get("From", "") or "")))
        subject = storable_text(str(msg.get("Subject", "") or ""))[:998]
        references = message_ids_in(storable_text(str(msg.get("References", "") or "")))
    except Exception:  # noqa: BLE001 - intake must store the bytes whatever they are
        return QuickHeaders()
    return QuickHeaders(ids[0] if ids else None, addr.lower() or None, subject or None,
                        tuple(references))


def storable_text(text: str) -> str:
    """Text safe to store: decoded mail can carry NUL characters, which PostgreSQL text columns
    reject (found on a corpus mail whose ISO-2022-JP subject decodes to one), and lone
    surrogates, which no database driver can encode: the email package keeps a raw 8-bit byte
    of a header as one (surrogateescape), e.g. 0x80 in a From line (found by the long fuzz
    mode: the requester look-up raised UnicodeEncodeError).  Each becomes U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def safe_content(part: Message) -> str:
    """Decoded text of a part; unknown or lying charsets fall back instead of raising."""
    return storable_text(_decoded(part))


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


_CTRL = re.compile(r"[\x00-\x1f\x7f]+")


def _header_str(msg: EmailMessage, name: str) -> str:
    """A header's decoded value; '' when absent.

    ``policy.default`` refuses some values outright, e.g. a From display name whose encoded
    word decodes to CR/LF (``=?utf-8?q?John=0D=0ADoe?=`` raises ValueError).  Such a header is
    decoded again from its raw value, control characters replaced by spaces, rather than read
    as empty: that is what made a valid sender look like ``has_no_sender``.
    """
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - refused by the structured parser: decode it leniently
        return storable_text(_lenient_header(msg, name))
    return "" if value is None else storable_text(str(value))


def _lenient_header(msg: EmailMessage, name: str) -> str:
    raw = next((str(v) for k, v in msg.raw_items() if k.lower() == name.lower()), "")
    try:
        decoded = str(make_header(decode_header(_CTRL.sub(" ", raw))))
    except Exception:  # noqa: BLE001 - undecodable encoded words: keep the raw text
        decoded = raw
    return " ".join(_CTRL.sub(" ", decoded).split())


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a line end, else a sentence end, else a
    space, whichever is found in the last fifth; only then mid-word."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    floor = limit * 4 // 5
    for cut in (head.rfind("\n"), max(head.rfind(". "), head.rfind("? "), head.rfind("! ")),
                head.rfind(" ")):
        if cut >= floor:
            return head[:cut + 1].rstrip()
    return head


def parse_mail(raw: bytes) -> MailView:
    """Parse raw bytes into a :class:`MailView`; raise :class:`MailParseError` if unsafe."""
    check_header_limits(raw)
    check_part_limits(raw)
    repaired, repairs = repair_headers(raw)
    try:
        msg = BytesParser(policy=_policy()).parsebytes(repaired)
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
    shortened: list[tuple[str, int, int]] = []
    if plain is not None:
        text_body = safe_content(plain)
        if len(text_body) > MAX_TEXT_CHARS:
            full = len(text_body)
            text_body = shorten(text_body, MAX_TEXT_CHARS)
            shortened.append(("text/plain", full, len(text_body)))
    if html is not None:
        html_body = safe_content(html)
        if len(html_body) > MAX_HTML_CHARS:
            full = len(html_body)
            html_body = shorten(html_body, MAX_HTML_CHARS)
            shortened.append(("text/html", full, len(html_body)))
    attachments = list_attachments(parts, {id(plain), id(html)})
    tnef_read = False
    for part in parts:
        if part.get_content_type() != "application/ms-tnef":
            continue
        try:
            data = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001 - an undecodable part is already listed
            continue
        if not isinstance(data, bytes):
            continue
        # Outlook "rich text" mail: the body is inside winmail.dat, often nowhere else.  Only
        # the first winmail.dat's body is read (Outlook sends one; each RTF body costs time).
        want_body = not text_body.strip() and html_body is None and not tnef_read
        tnef, tnef_read = read_tnef(data, want_body=want_body), tnef_read or want_body
        if not text_body.strip() and tnef.text.strip():
            text_body = shorten(tnef.text, MAX_TEXT_CHARS)
            if len(text_body) < len(tnef.text):
                shortened.append(("application/ms-tnef", len(tnef.text), len(text_body)))
        if html_body is None and tnef.html:
            html_body = shorten(tnef.html, MAX_HTML_CHARS)
        attachments.extend(tnef.attachments[:max(0, MAX_ATTACHMENTS - len(attachments))])
        if tnef.note:
            attachments.append({"filename": "winmail.dat", "content_type": "application/ms-tnef",
                                "size": len(data), "note": tnef.note})

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
        from_addr=addr.lower() if "@" in addr and not _CTRL.search(addr) else None,
        from_name=" ".join(name.split()),
        to_addrs=to_addrs,
        subject=" ".join(_header_str(msg, "Subject").split()),
        in_reply_to=message_ids_in(_header_str(msg, "In-Reply-To")),
        references=message_ids_in(_header_str(msg, "References")),
        text=text_body,
        html=html_body,
        attachments=attachments,
        defects=[type(d).__name__ for d in msg.defects],
        repairs=repairs,
        shortened=shortened,
    )


def list_attachments(parts: Sequence[Message], bodies: set[int]) -> list[dict[str, object]]:
    """Name, type and decoded size of each non-body part, at most :data:`MAX_ATTACHMENTS`.

    Attachments are listed, never opened, rendered or executed here or anywhere downstream.
    """
    attachments: list[dict[str, object]] = []
    for part in parts:
        if part.is_multipart() or id(part) in bodies:
            continue
        try:
            filename = storable_text(part.get_filename() or "")
            content_type = part.get_content_type()
            if not (part.get_content_disposition() == "attachment" or filename or
                    part.get_content_maintype() != "text"):
                continue
            payload = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001 - an unreadable part is listed without a size
            filename, content_type, payload = "", "application/octet-stream", None
        if len(attachments) == MAX_ATTACHMENTS:
            attachments.append({"filename": "", "content_type": "", "size": 0,
                                "note": f"more than {MAX_ATTACHMENTS} attachments; the rest not listed"})
            break
        attachments.append({"filename": _CTRL.sub(" ", filename)[:255], "content_type": content_type,
                            "size": len(payload) if isinstance(payload, bytes) else 0})
    return attachments
