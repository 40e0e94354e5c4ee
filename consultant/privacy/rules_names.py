"""Rules for person names: next to a patient cue, after a title, in a salutation about a patient,
or right before another identifier.

A capitalised word is not a name by itself ("Modifier", "Medicare", "Left"), so each rule needs a
cue, and the weaker the cue the more the census lists (``names``) must agree: after "Patient:"
any capitalised words are taken; after "patient" or "for" the words must be a first name, or
a first name and a surname.  Provider names ("Dr. Patel") are not patient identifiers and stay.
Payer names stay too: they decide the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from consultant.privacy import names
from consultant.privacy.hits import Hit
from consultant.privacy.kinds import Kind

# A name word: John, O'Brien, McDonald, Smith-Jones; or all capitals (pasted from an EHR).
_WORD = r"(?:[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?)"
_CAPS = r"(?:[A-Z]{2,}(?:['-][A-Z]+)?)"
_INITIAL = r"(?:[A-Z]\.?(?![\w']))"
_SEQ = rf"{_WORD}(?:[ \t]+(?:{_INITIAL}|{_WORD})){{0,3}}"
_CAPS_SEQ = rf"{_CAPS}(?:[ \t]+(?:{_INITIAL}|{_CAPS})){{0,3}}"
_LAST_FIRST = rf"{_WORD},[ \t]*{_WORD}(?:[ \t]+{_INITIAL})?|{_CAPS},[ \t]*{_CAPS}(?:[ \t]+{_INITIAL})?"
# Words that follow our cues but name a payer, a place or a coding term, never a person.
NOT_NAMES = frozenset("""
medicare medicaid advantage blue cross shield aetna cigna humana united unitedhealthcare anthem
tricare molina centene wellcare kaiser ambetter highmark emblem oscar caresource bcbs uhc
dob mrn ssn mbi dos cpt icd hcpcs ndc id pos er ed or icu new established
patient pt name member subscriber beneficiary resident dear hi hello thanks thank regarding re
about for mr mrs ms miss dr doctor provider the and with date birth
""".split())

_STRONG_CUE = (r"\b(?i:patient(?:'s)?\s+name|pt\.?\s+name|name\s+of\s+(?:the\s+)?(?:patient|pt)|"
               r"patient|pt|beneficiary|member|subscriber|insured|guarantor|resident|"
               r"(?:patient|member|client)?\s*name)\s*[:=]\s*")
_TITLE_CUE = r"\b(?:Mr|Mrs|Ms|Miss|Mx)\.?[ \t]+"
_WEAK_CUE = (r"\b(?i:patient|pt\.?|beneficiary|member|resident|client|infant|baby|newborn|son|"
             r"daughter|husband|wife|mother|father|mom|dad|spouse|child|twin|named|called)"
             r",?[ \t]+(?:(?i:named|is|was)[ \t]+)?")
_ABOUT_CUE = r"\b(?i:re|regarding|about|concerning|for|on)[ \t]*:?[ \t]+(?:(?i:patient|pt\.?)[ \t]+)?"
_NEXT_ID = (r"(?=[ \t]*[,(;-]?[ \t]*(?:(?i:DOB|D\.O\.B|date\s+of\s+birth|born|MRN|SSN|MBI|"
            r"age[ds]?\b|acct|account|member\s+ID)|(?:\d{1,3}[ \t]*-?[ \t]*(?i:y/?o|yo|years?[- ]old))))")


def _words(value: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", value) if w and not re.fullmatch(r"[A-Z]\.?", w)]


def _plausible(value: str, *, need: str) -> bool:
    """Do the census lists agree that ``value`` is a person's name?

    need="any": taken as it is (strong cue); "first": the first word is a first name, or two
    words are both census surnames; "full": a first name followed by a surname.
    """
    words = _words(value)
    if not words or any(w.lower() in NOT_NAMES for w in words):
        return False
    if need == "any":
        return True
    first, last = words[0], words[-1]
    if need == "first":
        return names.is_first_name(first) or (len(words) >= 2 and names.is_surname(first)
                                               and names.is_surname(last))
    return len(words) >= 2 and names.is_first_name(first) and names.is_surname(last)


@dataclass(frozen=True)
class NameRule:
    name: str
    description: str
    pattern: re.Pattern[str]
    need: str  # see _plausible
    kind: Kind = Kind.NAME

    def find(self, text: str) -> Iterator[Hit]:
        for m in self.pattern.finditer(text):
            value, base = m.group("v"), m.start("v")
            # Cue words caught by a loose pattern ("Patient Franklin Moore") are not the name,
            # and trailing words the lists reject ("John Smith Modifier") are dropped.
            words = list(re.finditer(r"\S+", value))
            while words and words[0].group().lower().strip(",.:") in NOT_NAMES:
                words.pop(0)
            while words:
                start, end = words[0].start(), words[-1].end()
                if _plausible(value[start:end].rstrip(","), need=self.need):
                    yield Hit(self.name, self.kind, base + start, base + end)
                    break
                words.pop()


def _name_rule(name: str, description: str, cue: str, seq: str, need: str,
               after: str = "") -> NameRule:
    return NameRule(name, description, re.compile(rf"{cue}(?P<v>{seq}){after}"), need)


RULES: list[NameRule] = [
    _name_rule("name_after_label", "a name after 'Patient:' or 'Name:'", _STRONG_CUE,
               rf"(?:{_LAST_FIRST}|{_SEQ}|{_CAPS_SEQ})", "any"),
    _name_rule("name_after_title", "a name after Mr/Mrs/Ms", _TITLE_CUE,
               rf"(?:{_SEQ}|{_CAPS_SEQ})", "any"),
    _name_rule("name_after_patient", "a first name after 'patient', 'member', 'son' …", _WEAK_CUE,
               rf"(?:{_SEQ}|{_CAPS_SEQ})", "first"),
    _name_rule("name_in_salutation", "a full name after 'Re:', 'regarding', 'for' …", _ABOUT_CUE,
               _SEQ, "full"),
    _name_rule("name_before_identifier", "a name right before a DOB, MRN, SSN or age",
               r"(?<![\w'])", rf"(?:{_LAST_FIRST}|{_SEQ})", "first", _NEXT_ID),
]


class FilenameNameRule:
    """Two name words side by side in an attachment name ("Michael_Johnson_xray.pdf",
    "op_note_Brown_Joshua.pdf"): a filename has no sentence to give a cue, so both census
    lists must agree (a first name and a surname, in either order)."""

    name = "name_in_filename"
    kind = Kind.NAME
    description = "a first name and a surname side by side in an attachment name"
    pattern = re.compile(rf"(?<![A-Za-z])(?P<a>{_WORD}) (?P<b>{_WORD})(?![a-z])")

    def find(self, text: str) -> Iterator[Hit]:
        for m in self.pattern.finditer(text):
            a, b = m.group("a"), m.group("b")
            if {a.lower(), b.lower()} & NOT_NAMES:
                continue
            if (names.is_first_name(a) and names.is_surname(b)) or \
                    (names.is_surname(a) and names.is_first_name(b)):
                yield Hit(self.name, self.kind, m.start(), m.end())


def repeated(text: str, found: list[str]) -> Iterator[Hit]:
    """Every other mention of a name already found ("Mr. Smith" later, "SMITH" in a subject)."""
    tokens = {w for value in found for w in _words(value)
              if len(w) >= 3 and w.lower() not in NOT_NAMES}
    if not tokens:
        return
    alternatives = "|".join(sorted((re.escape(t) for t in tokens), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w'])(?:{alternatives})(?![\w])", re.I)
    for m in pattern.finditer(text):
        word = m.group(0)
        # Case-insensitive only for all-caps copies: "Will" the name, not "will" the verb.
        if word[0].isupper():
            yield Hit("name_repeated", Kind.NAME, m.start(), m.end())
