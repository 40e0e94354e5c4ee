"""A parsed mail with every field a human may see redacted: the one place that does it.

Processing stores the case's subject and question from here, the console shows the thread from
here, so the raw mail (encrypted at rest) is the only copy that still holds identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consultant.mail.body import new_text
from consultant.mail.parse import MailView
from consultant.privacy.html import redact_html
from consultant.privacy.kinds import Kind
from consultant.privacy.redact import Summary, known_names, redact_filename, redact_text


@dataclass
class RedactedMail:
    subject: str
    from_name: str
    text: str  # the full text part
    new_text: str  # the sender's own words (quotes removed), as the question is read
    html: str | None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    # The removed values themselves, for the outgoing check of this case's answer: kept in
    # memory only, never stored or logged.
    values: list[tuple[Kind, str]] = field(default_factory=list, repr=False)


def redact_mail(view: MailView, *, ours: tuple[str, ...] = ()) -> RedactedMail:
    """Every human-visible field of ``view`` with identifiers replaced by placeholders.

    The sender's own address and ``ours`` are not identifiers (the issue's rule: "e-mail
    addresses other than the sender's").
    """
    allowed = [a for a in (view.from_addr or "", *ours) if a]
    filenames = [str(a.get("filename") or "") for a in view.attachments]
    names = known_names([view.subject, view.from_name, view.text])
    for filename in filenames:
        spaced = filename.replace("_", " ")
        names += [spaced[h.start:h.end] for h in redact_filename(filename).hits if h.kind is Kind.NAME]
    summary = Summary()
    values: list[tuple[Kind, str]] = []

    def text(value: str) -> str:
        red = redact_text(value, allowed_emails=allowed, known_names=names)
        summary.add(red.hits)
        values.extend((h.kind, value[h.start:h.end]) for h in red.hits)
        return red.text

    subject = text(view.subject)
    from_name = text(view.from_name)
    body = text(view.text)
    # The question text is cut from the original, then redacted on its own: the cut (quotes,
    # signatures) must see the sender's real layout; its hits are already counted in ``body``.
    question = redact_text(new_text(view), allowed_emails=allowed, known_names=names).text
    html: str | None = None
    if view.html:
        red_html = redact_html(view.html, allowed_emails=allowed, known_names=names)
        # The HTML part usually repeats the text part: count only what the text did not have.
        extra = [h for h in red_html.hits
                 if not view.text.strip() or str(h.kind) not in summary.counts]
        summary.add(extra)
        values.extend(red_html.values)
        html = red_html.text
    attachments = []
    for attachment, filename in zip(view.attachments, filenames, strict=True):
        red = redact_filename(filename, names)
        summary.add(red.hits)
        spaced = filename.replace("_", " ")
        values.extend((h.kind, spaced[h.start:h.end]) for h in red.hits)
        attachments.append({**attachment, "filename": red.text})
    return RedactedMail(subject, from_name, body, question, html, attachments, summary, values)
