"""Build outbound messages: threading headers, our own Message-ID, the case tag.

Headers are never built from unchecked input: the recipient must be a single syntactically
valid address, the subject has control characters removed before it goes near a header, and
every header is set through ``EmailMessage`` with ``policy.default``, which refuses CR/LF in
values — so a hostile Subject cannot inject headers into our reply.

Loops: everything we send carries ``X-CaseConsultant-Loop: <our address>`` and a signed
Message-ID (``mail/msgid``).  Intake treats any mail bearing the loop header as machine mail
(ours come back, or another CaseConsultant's), and recognises the signed ids in bounces.
"""

from __future__ import annotations

import re
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from consultant.mail.msgid import signer_for
from consultant.mail.rules import LOOP_HEADER
from consultant.models import utcnow
from consultant.settings import Settings

MAX_REFERENCES = 10
_CTRL = re.compile(r"[\x00-\x1f\x7f]+")
_TAG = re.compile(r"\s*\[CC-\d+\]\s*")
_RE_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|wg)\s*(\[\d+\])?\s*:\s*)+", re.I)
_ADDR = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$|^[^@\s<>]+@localhost$")


class BadAddress(ValueError):
    pass


def case_tag(case_id: int) -> str:
    return f"[CC-{case_id}]"


def reply_subject(original: str, case_id: int) -> str:
    """``Re: <original without Re:/old tags> [CC-<id>]``, single line, bounded length."""
    clean = _CTRL.sub(" ", original or "")
    clean = _TAG.sub(" ", clean)
    clean = _RE_PREFIX.sub("", clean).strip()
    clean = " ".join(clean.split())[:200] or "Your coding question"
    return f"Re: {clean} {case_tag(case_id)}"


def checked_address(addr: str) -> str:
    addr = (addr or "").strip()
    if not _ADDR.match(addr) or len(addr) > 254:
        raise BadAddress(f"not a usable single mail address: {addr!r}")
    return addr


def new_message_id(settings: Settings) -> str:
    """A signed Message-ID of ours (see ``mail/msgid``)."""
    return signer_for(settings).new()


def envelope_sender(settings: Settings, approved_by: str | None) -> str:
    """MAIL FROM for an outbox row: our address for what a consultant approved (its bounces
    must reach us, to mark the address undeliverable), the null sender for automatic notices
    (RFC 3834 §3.3: a bounce of an automatic message must not cause more mail)."""
    return settings.service.address if approved_by else ""


def capped_references(references: list[str], in_reply_to: str | None) -> list[str]:
    """The thread's References, keeping the first (root) and the most recent ids (RFC 5322 §3.6.4)."""
    chain = [r for r in references if r]
    if in_reply_to and in_reply_to not in chain:
        chain.append(in_reply_to)
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1):]]
    return chain


def build_message(settings: Settings, *, to_addr: str, subject: str, text: str,
                  html: str | None, message_id: str, in_reply_to: str | None,
                  references: list[str], auto_submitted: str | None = None) -> bytes:
    """Serialise one outbound message to bytes (stored in the outbox before any attempt)."""
    msg = EmailMessage()
    local, _, domain = settings.service.address.partition("@")
    msg["From"] = Address(display_name=_CTRL.sub(" ", settings.service.name), username=local,
                          domain=domain)
    msg["To"] = checked_address(to_addr)
    msg["Subject"] = _CTRL.sub(" ", subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id
    # On everything we send, answers included: a robot that echoes our mail back (or another
    # CaseConsultant answering us) is recognised by it and never answered (rules.is_loop).
    msg[LOOP_HEADER] = settings.service.address
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    refs = capped_references(references, in_reply_to)
    if refs:
        msg["References"] = " ".join(refs)
    if auto_submitted:
        # RFC 3834: machine-generated notices say so, so other robots don't answer them.
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    # CRLF line ends: smtplib sends bytes unmodified, and SMTP requires CRLF (RFC 5321 §2.3.8).
    return msg.as_bytes(policy=policy.SMTP)
