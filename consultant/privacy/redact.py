"""Replace suspected identifiers with placeholders: in plain text, and in a whole mail.

A mail is redacted field by field (subject, display names, body text, HTML, attachment names),
but names found in one field are looked for in all of them: "question for patient John Smith"
in the subject makes "Mr. Smith" in the body a name too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from consultant.privacy.detect import detect, merge, names_in
from consultant.privacy.hits import Hit
from consultant.privacy.kinds import DESCRIPTIONS, PLACEHOLDERS, Kind
from consultant.privacy.rules_names import FilenameNameRule


@dataclass
class Redacted:
    """A text with its identifiers replaced, and the hits (rule, kind, span in the original)."""

    text: str
    hits: list[Hit] = field(default_factory=list)

    @property
    def kinds(self) -> Counter[Kind]:
        return Counter(h.kind for h in self.hits)


def apply(text: str, hits: Sequence[Hit]) -> str:
    """``text`` with each (merged, sorted) hit replaced by its kind's placeholder."""
    out, last = [], 0
    for hit in hits:
        out += [text[last:hit.start], PLACEHOLDERS[hit.kind]]
        last = hit.end
    out.append(text[last:])
    return "".join(out)


def redact_text(text: str, *, allowed_emails: Iterable[str] = (),
                known_names: Sequence[str] = ()) -> Redacted:
    hits = detect(text, allowed_emails=allowed_emails, known_names=known_names)
    return Redacted(apply(text, hits), hits)


def redact_filename(name: str, known_names: Sequence[str] = ()) -> Redacted:
    """Attachment names: underscores read as spaces ("John_Smith_DOB_041761.pdf")."""
    spaced = name.replace("_", " ")
    hits = merge([*detect(spaced, known_names=known_names),
                  *FilenameNameRule().find(spaced)])
    return Redacted(apply(name, hits), hits)


@dataclass
class Summary:
    """What was removed from a case, by kind: stored on the case, shown in the console and
    named (never the values) in the answer's warning."""

    counts: dict[str, int] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.counts)

    def add(self, hits: Iterable[Hit]) -> None:
        for hit in hits:
            self.counts[str(hit.kind)] = self.counts.get(str(hit.kind), 0) + 1
            if f"phi_{hit.rule}" not in self.rules:
                self.rules.append(f"phi_{hit.rule}")

    def add_summary(self, other: Summary) -> None:
        for kind, count in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + count
        self.rules += [r for r in other.rules if r not in self.rules]

    @property
    def kinds(self) -> list[str]:
        order = [str(k) for k in Kind]
        return sorted(self.counts, key=order.index)

    def counted(self) -> str:
        """"2 × name, 1 × dob": for the console and refusal messages."""
        return ", ".join(f"{self.counts[k]} \u00d7 {k}" for k in self.kinds)

    def described(self) -> list[str]:
        return [DESCRIPTIONS[Kind(k)] for k in self.kinds]

    def as_json(self) -> dict[str, object]:
        return {"counts": {k: self.counts[k] for k in self.kinds}, "rules": list(self.rules)}

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> Summary:
        data = data or {}
        counts = data.get("counts") or {}
        rules = data.get("rules") or []
        assert isinstance(counts, dict) and isinstance(rules, list)
        return cls({str(k): int(v) for k, v in counts.items()}, [str(r) for r in rules])


def known_names(texts: Iterable[str]) -> list[str]:
    """Names found in any of ``texts`` (to find them again in the others)."""
    found: list[str] = []
    for text in texts:
        found += names_in(text, detect(text))
    return found
