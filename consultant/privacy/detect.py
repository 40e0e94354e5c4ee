"""Run every rule over a text and merge the hits into non-overlapping spans."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from consultant.privacy import rules_ids, rules_names
from consultant.privacy.hits import Hit, Rule
from consultant.privacy.kinds import Kind

# Order matters only for identical spans: the earlier rule names the kind ("Medicare ID
# 1EG4-TE5-MK73" is an MBI, not an account number).
RULES: list[Rule] = [*rules_ids.RULES, rules_ids.InternationalPhoneRule(), *rules_names.RULES]
_AS_SPACE = str.maketrans({"|": " ", "*": " ", "\u00a0": " "})
_PRIORITY = {rule.name: i for i, rule in enumerate(RULES)}


def detect(text: str, *, allowed_emails: Iterable[str] = (),
           known_names: Sequence[str] = ()) -> list[Hit]:
    """The suspected identifiers in ``text``, sorted, overlaps merged.

    ``allowed_emails``: addresses that are not identifiers here (the sender's, ours).
    ``known_names``: names found elsewhere in the same mail, found again here wherever they occur.
    """
    allowed = {a.lower() for a in allowed_emails if a}
    hits = [h for h in _rule_hits(text)
            if not (h.kind is Kind.EMAIL and text[h.start:h.end].lower() in allowed)]
    found_names = [*known_names, *(text[h.start:h.end] for h in hits if h.kind is Kind.NAME)]
    hits += rules_names.repeated(text, found_names)
    return merge(hits)


@lru_cache(maxsize=16)
def _rule_hits(text: str) -> tuple[Hit, ...]:
    """Every rule's hits in ``text``: most of detection's cost, and the same for a text whatever
    the caller's allowed addresses and known names.  Redacting one mail detects in its subject,
    sender name and body twice or three times (first to learn the names in each, then with
    them), so the last few texts are kept.  Only in this process's memory, as the mail itself
    is while it is processed; 16 texts are about the last two mails'."""
    # Table pipes and emphasis marks (HTML converted to text) read as spaces; same length, so
    # every span is a span of the original text.
    read = text.translate(_AS_SPACE)
    return tuple(h for rule in RULES for h in rule.find(read))


def merge(hits: Iterable[Hit]) -> list[Hit]:
    """Overlapping hits become one span; the longest (then the first rule) names it."""
    ordered = sorted(hits, key=lambda h: (h.start, -(h.end - h.start), _PRIORITY.get(h.rule, 99)))
    merged: list[Hit] = []
    for hit in ordered:
        if merged and hit.start < merged[-1].end:
            last = merged[-1]
            if hit.end > last.end:
                merged[-1] = Hit(last.rule, last.kind, last.start, hit.end)
            continue
        merged.append(hit)
    return merged


def names_in(text: str, hits: Iterable[Hit]) -> list[str]:
    return [text[h.start:h.end] for h in hits if h.kind is Kind.NAME]
