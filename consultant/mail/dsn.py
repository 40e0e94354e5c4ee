"""What a bounce says: which recipients failed, how hard, and which message it returns.

Read from the RFC 3464 ``message/delivery-status`` part when there is one; older MTAs send
prose, from which only an X-Failed-Recipients header and SMTP status codes are taken.  The
returned message's ids come from its ``message/rfc822`` or ``text/rfc822-headers`` part, the
bounce's own In-Reply-To/References, and ids of our format quoted in the text (some MTAs
return only a text excerpt).  Nothing here trusts those ids: the caller checks their
signatures (``mail/msgid``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import HeaderParser

from consultant.mail.msgid import signed_ids_in_text
from consultant.mail.parse import MailView, message_ids_in

_ENHANCED = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_SMTP_CODE = re.compile(r"\b([45])[0-5]\d[ -]")
MAX_TEXT = 200_000


@dataclass
class Bounce:
    hard: bool = False
    status: str = ""
    recipients: list[str] = field(default_factory=list)
    diagnostic: str = ""
    original_ids: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = [self.status or ("permanent failure" if self.hard else "temporary failure")]
        if self.diagnostic:
            parts.append(self.diagnostic[:300])
        return " ".join(parts)


def _address(value: str) -> str:
    """``rfc822; user@example.org`` -> ``user@example.org``."""
    return value.partition(";")[2].strip().strip("<>").lower() if ";" in value else value.strip().lower()


def _read_status_part(part: Message, bounce: Bounce) -> None:
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return
    for block in blocks[1:]:  # the first block is per-message, the rest per recipient
        if not isinstance(block, Message):
            continue
        action = str(block.get("Action", "")).strip().lower()
        status = str(block.get("Status", "")).strip()
        recipient = _address(str(block.get("Final-Recipient", "") or block.get("Original-Recipient", "")))
        if action == "failed" or status.startswith("5"):
            bounce.hard = bounce.hard or status.startswith("5") or not status
            bounce.status = bounce.status or status
            bounce.diagnostic = bounce.diagnostic or " ".join(str(block.get("Diagnostic-Code", "")).split())
            if recipient:
                bounce.recipients.append(recipient)


def _returned_headers(part: Message) -> Message | None:
    if part.get_content_type() == "message/rfc822":
        payload = part.get_payload()
        first = payload[0] if isinstance(payload, list) and payload else None
        return first if isinstance(first, Message) else None
    if part.get_content_type() == "text/rfc822-headers":
        text = part.get_payload(decode=True)
        if isinstance(text, bytes):
            return HeaderParser(policy=policy.compat32).parsestr(text.decode("utf-8", "replace"))
    return None


def read_bounce(view: MailView) -> Bounce:
    """The bounce's failed recipients and status, and every id it names for the original."""
    bounce = Bounce()
    has_dsn = False
    texts = [view.text]
    for part in view.message.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            has_dsn = True
            _read_status_part(part, bounce)
            continue
        returned = _returned_headers(part)
        if returned is not None:
            bounce.original_ids += message_ids_in(str(returned.get("Message-ID", "") or ""))
            continue
        if part.get_content_maintype() == "text" and ctype != "text/html":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(payload[:MAX_TEXT].decode("utf-8", "replace"))
    text = "\n".join(texts)[:MAX_TEXT]
    if not has_dsn:
        failed = [a.strip().lower() for a in view.header("X-Failed-Recipients").split(",") if a.strip()]
        bounce.recipients += failed
        enhanced = _ENHANCED.search(text)
        if enhanced:
            bounce.status = enhanced.group(0)
            bounce.hard = enhanced.group(1) == "5"
        else:
            code = _SMTP_CODE.search(text)
            bounce.hard = bool(code and code.group(1) == "5")
    bounce.original_ids += view.in_reply_to + view.references + signed_ids_in_text(text)
    bounce.original_ids = list(dict.fromkeys(bounce.original_ids))
    return bounce
