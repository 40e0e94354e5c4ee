"""The last check before an answer goes to the outbox: the composed message holds no identifier.

Runs on exactly what will be sent (subject, text part, HTML part), after the footer is added,
so the warning "we have left them out of this reply" is true of the message itself, whatever a
consultant typed into the draft.  A finding names the place and the rule, and shows the
surrounding words with the identifier already replaced: the refusal message is displayed in the
console and returned by the API, so it must not carry the value either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from consultant.privacy.detect import detect
from consultant.privacy.hits import Hit
from consultant.privacy.html import html_text
from consultant.privacy.kinds import Kind
from consultant.privacy.redact import apply

CONTEXT_CHARS = 30


@dataclass(frozen=True)
class Finding:
    part: str  # "subject" | "text" | "html"
    line: int
    column: int
    rule: str
    kind: Kind
    context: str  # the words around it, the identifier replaced by its placeholder

    def __str__(self) -> str:
        where = "the subject" if self.part == "subject" else \
            f"{'the HTML part' if self.part == 'html' else 'the text'}, line {self.line}, column {self.column}"
        return (f"{where}: {self.kind} (rule {self.rule}) in "
                f"\u201c{self.context}\u201d")


def check(*, subject: str, text: str, html: str | None,
          allowed_emails: Iterable[str] = ()) -> list[Finding]:
    """Identifiers in the message about to be queued; empty when it may go."""
    allowed = list(allowed_emails)
    findings: list[Finding] = []
    seen_text: set[tuple[str, Kind]] = set()
    for part, body in (("subject", subject), ("text", text), ("html", html_text(html) if html else "")):
        hits = detect(body, allowed_emails=allowed)
        for hit in hits:
            if part == "html" and (body[hit.start:hit.end], hit.kind) in seen_text:
                continue  # the HTML part repeats the text part: report each place once
            if part == "text":
                seen_text.add((body[hit.start:hit.end], hit.kind))
            line = body.count("\n", 0, hit.start) + 1
            column = hit.start - (body.rfind("\n", 0, hit.start) + 1) + 1
            findings.append(Finding(part, line, column, hit.rule, hit.kind,
                                    _context(body, hit, hits)))
    return findings


def _context(body: str, hit: Hit, hits: list[Hit]) -> str:
    """The words around ``hit`` with every identifier in them replaced; the window grows to
    take in whole any identifier at its edge, so no part of a value is shown."""
    lo, hi = max(0, hit.start - CONTEXT_CHARS), min(len(body), hit.end + CONTEXT_CHARS)
    for other in hits:
        if other.start < hi and lo < other.end:
            lo, hi = min(lo, other.start), max(hi, other.end)
    inside = [Hit(h.rule, h.kind, h.start - lo, h.end - lo) for h in hits if lo <= h.start and h.end <= hi]
    return " ".join(apply(body[lo:hi], inside).split())
