"""A case's thread as the console shows it: requester mails and our answers, oldest first.

Mail HTML is attacker-controlled.  It is never put into a console page as markup: it is
sanitised with nh3 (no scripts, no event handlers, no javascript: URLs, no forms or frames) and
then shown only inside ``<iframe sandbox srcdoc=...>`` (sandbox without allow-scripts and
without allow-same-origin), under a page CSP that forbids scripts.  Any one of the three would
stop a ``<script>``; all three are kept because each has had bypasses on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import BytesParser

import nh3

from consultant.mail.parse import MailParseError, parse_mail
from consultant.models import Case, InboundMail, Outbox
from consultant.privacy.mail import redact_mail

MAX_SHOWN_CHARS = 200_000
# Tags a mail needs to be readable; everything else (script, style, iframe, form, object,
# svg, math, ...) is dropped by nh3.  No attribute that can carry a script is allowed.
_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "div",
    "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol",
    "p", "pre", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul",
}
_ALLOWED_ATTRS = {
    "*": {"align", "colspan", "rowspan", "title", "dir", "lang"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "font": {"color"},
}


def sanitise_html(html: str) -> str:
    """Mail HTML reduced to inert markup (see the module docstring for why)."""
    return nh3.clean(html[:MAX_SHOWN_CHARS], tags=_ALLOWED_TAGS, attributes=_ALLOWED_ATTRS,
                     url_schemes={"http", "https", "mailto", "cid"}, link_rel="noopener noreferrer",
                     strip_comments=True)


@dataclass
class ThreadItem:
    kind: str  # "inbound" | "outbound"
    at: datetime | None
    sender: str
    subject: str
    text: str
    html: str | None = None  # sanitised
    attachments: list[dict[str, object]] = field(default_factory=list)
    disposition: str | None = None
    rule_hits: list[str] = field(default_factory=list)
    status: str | None = None
    message_id: str | None = None
    note: str = ""


def inbound_item(mail: InboundMail) -> ThreadItem:
    item = ThreadItem(kind="inbound", at=mail.received_at, sender=mail.from_addr or "(unknown)",
                      subject=mail.subject or "", text="", disposition=mail.disposition,
                      rule_hits=list(mail.rule_hits or []), message_id=mail.message_id)
    if mail.raw is None:
        item.note = "The original message was purged after the retention period; the case keeps its redacted text."
        return item
    try:
        view = parse_mail(mail.raw)
    except MailParseError as exc:
        item.note = f"This mail cannot be parsed safely ({exc}); showing nothing from it."
        return item
    # Consultants see the mail with patient identifiers replaced (consultant.privacy): the
    # console is a place "stored for humans" like any other.
    shown = redact_mail(view)
    item.subject = shown.subject or item.subject
    item.text = shown.text[:MAX_SHOWN_CHARS]
    if shown.html:
        item.html = sanitise_html(shown.html)
        if not item.text.strip():
            from consultant.mail.body import html_to_text

            item.text = html_to_text(shown.html)[:MAX_SHOWN_CHARS]
    item.attachments = list(shown.attachments)
    return item


def outbound_item(out: Outbox) -> ThreadItem:
    text = ""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(out.raw)
        body = msg.get_body(preferencelist=("plain",))
        if body is not None:
            text = str(body.get_content())
    except Exception:  # noqa: BLE001 - our own message; show what we can
        text = ""
    return ThreadItem(kind="outbound", at=out.sent_at or out.created_at, sender=out.approved_by or "",
                      subject=out.subject, text=text[:MAX_SHOWN_CHARS], status=out.status,
                      message_id=out.message_id, note=out.kind)


def thread(case: Case) -> list[ThreadItem]:
    items = [inbound_item(m) for m in case.mails] + [outbound_item(o) for o in case.outbox]
    return sorted(items, key=lambda i: (i.at is None, i.at))
