"""The last check before an answer goes to the outbox: the composed message holds no identifier.

Runs on exactly what will be sent (subject, text part, HTML part), after the footer is added,
so the warning "we have left them out of this reply" is true of the message itself, whatever a
consultant typed into the draft.  A finding names the place and the rule, and shows the
surrounding words with the identifier already replaced: the refusal message is displayed in the
console and returned by the API, so it must not carry the value either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from consultant.privacy.detect import detect, merge
from consultant.privacy.hits import Hit
from consultant.privacy.html import html_text
from consultant.privacy.kinds import Kind
from consultant.privacy.redact import apply
from consultant.privacy.rules_names import NOT_NAMES

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


def check(*, subject: str, text: str, html: str | None, allowed_emails: Iterable[str] = (),
          removed: Iterable[tuple[Kind, str]] = (), our_names: Iterable[str] = ()) -> list[Finding]:
    """Identifiers in the message about to be queued; empty when it may go.

    Two looks: the detection rules (an identifier with its cue or shape), and ``removed``, the
    values redaction took out of this case's mail — so "Smith" typed back alone, with no cue
    for the rules, is found too.  ``our_names``: the signing consultant's and the service's
    names, whose words are ours even when the patient shares one ("Jane").
    """
    allowed = list(allowed_emails)
    ours = {w.lower() for name in our_names for w in re.findall(r"[A-Za-z'-]+", name or "")}
    echo = _echo_rule(removed, ours)
    findings: list[Finding] = []
    seen_text: set[tuple[str, Kind]] = set()
    for part, body in (("subject", subject), ("text", text), ("html", html_text(html) if html else "")):
        hits = detect(body, allowed_emails=allowed)
        if echo is not None:
            hits = merge([*hits, *echo.find(body)])
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


# Dates are not matched by value: a date of birth or admission may well be the date of service
# the answer talks about; with their cue they are still found by the rules.  Values this short
# ("93", an age) would match numbers that mean something else.
_NOT_ECHOED = (Kind.DOB, Kind.DATE, Kind.AGE)
_MIN_ECHO = 4


@dataclass(frozen=True)
class _EchoRule:
    name = "value_from_mail"
    pattern: re.Pattern[str]
    kinds: dict[str, Kind]

    def find(self, text: str) -> Iterator[Hit]:
        for m in self.pattern.finditer(text):
            kind = self.kinds.get(_key(m.group(0)))
            if kind is Kind.NAME and not m.group(0)[0].isupper():
                continue  # "will" the verb, not Will the patient
            if kind is not None:
                yield Hit(self.name, kind, m.start(), m.end())


def _key(value: str) -> str:
    """Numbers written only with digits and separators compare by their digits."""
    if re.fullmatch(r"[\d\s./()+-]+", value) and len(re.sub(r"\D", "", value)) >= _MIN_ECHO:
        return re.sub(r"\D", "", value)
    return value.lower()


def _echo_rule(removed: Iterable[tuple[Kind, str]], ours: set[str]) -> _EchoRule | None:
    """A rule matching the removed values again: names word by word (capitalised, as names are
    written), numbers by their digits whatever the separators, the rest as written."""
    kinds: dict[str, Kind] = {}
    alternatives: set[str] = set()
    for kind, value in removed:
        if kind in _NOT_ECHOED:
            continue
        if kind is Kind.NAME:
            for word in re.findall(r"[A-Z][A-Za-z'-]+", value):
                if len(word) >= 3 and word.lower() not in NOT_NAMES and word.lower() not in ours:
                    kinds[word.lower()] = kind
                    alternatives.add(rf"(?<![\w']){re.escape(word)}(?![\w])")
                    alternatives.add(rf"(?<![\w']){re.escape(word.upper())}(?![\w])")
            continue
        if len(value) < _MIN_ECHO:
            continue
        kinds[_key(value)] = kind
        digits = re.sub(r"\D", "", value)
        if digits == _key(value):
            # The same digits with any separators: 123-45-6789, 123 45 6789, 123456789.
            alternatives.add(r"(?<![\w-])" + r"[\s./()-]{0,2}".join(digits) + r"(?![\w-])")
        else:
            alternatives.add(rf"(?<![\w]){re.escape(value)}(?![\w])")
    if not alternatives:
        return None
    return _EchoRule(re.compile("|".join(sorted(alternatives, key=len, reverse=True)), re.I), kinds)


def _context(body: str, hit: Hit, hits: list[Hit]) -> str:
    """The words around ``hit`` with every identifier in them replaced; the window grows to
    take in whole any identifier at its edge, so no part of a value is shown."""
    lo, hi = max(0, hit.start - CONTEXT_CHARS), min(len(body), hit.end + CONTEXT_CHARS)
    for other in hits:
        if other.start < hi and lo < other.end:
            lo, hi = min(lo, other.start), max(hi, other.end)
    inside = [Hit(h.rule, h.kind, h.start - lo, h.end - lo) for h in hits if lo <= h.start and h.end <= hi]
    return " ".join(apply(body[lo:hi], inside).split())
