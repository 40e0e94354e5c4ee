"""Cut a mail's text into its questions; nothing is dropped.

Numbered or bulleted items are questions when the sender numbered them; otherwise each sentence
ending in "?" is one, with the statements before it as its context, and a follow-on ("and which
modifier?") joins the question it continues.  A text with no "?" is one question.  Codes are not
searched here: each question is given the codes ``extract`` found whose text lies inside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_ITEM = re.compile(r"^\s*(?:(?:Q(?:uestion)?\s*)?(\d{1,2})[.):]|Q(?:uestion)?\s*(\d{1,2})\s*[-:]|[-*•]\s+(?=.*\?))\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[?])\s+|(?<=[.!])\s+(?=[A-Z0-9(\"'])")
_CONTINUATION = re.compile(r"^\s*(if so|if not|and |also,? |or |what about|which modifier|what modifier|"
                           r"do i need|does it|is it|would|should i|how about|and if)", re.I)
_GREETING = re.compile(r"^\s*(hi|hello|dear|good (morning|afternoon|evening)|hey)\b[^,\n!:]{0,40}([,!:]|$)", re.I | re.M)
_SIGNOFF = re.compile(r"^\s*(thanks|thank you|thx|regards|best|cheers|sincerely|kind regards|many thanks)\b[\s\S]*$",
                      re.I | re.M)


def clean(text: str) -> str:
    """The text without greeting, sign-off and trailing signature lines."""
    text = _GREETING.sub("", text, count=1)
    m = _SIGNOFF.search(text)
    if m and m.start() > 0:
        text = text[:m.start()]
    lines = text.strip().split("\n")
    while lines and (not lines[-1].strip() or (
            len(lines[-1].split()) <= 6 and not re.search(r"\d|[.?!]\s*$", lines[-1]))):
        lines.pop()
    return "\n".join(lines).strip()


def split(text: str, has_code: Callable[[str], bool], is_search: Callable[[str], bool]) -> tuple[str, list[str]]:
    """(preamble, question texts), at least one question for any non-empty text."""
    body = clean(text) or text.strip()
    items: list[list[str]] = []
    preamble: list[str] = []
    for line in body.split("\n"):
        m = _ITEM.match(line)
        if m and (m.group(1) or m.group(2) or line.strip().startswith(("-", "*", "•"))):
            items.append([line[m.end():]])
        elif items and line.strip():
            items[-1].append(line)
        elif not items:
            preamble.append(line)
    if len(items) >= 2:
        return "\n".join(preamble).strip(), [" ".join(x.strip() for x in i if x.strip()) for i in items]
    flat = re.sub(r"\s+", " ", body).strip()
    parts: list[str] = []
    pending: list[str] = []
    for sentence in _SENTENCE_END.split(flat):
        if not sentence:
            continue
        pending.append(sentence)
        if sentence.rstrip().endswith("?"):
            joined = " ".join(pending)
            follow_on = _CONTINUATION.match(sentence) and not has_code(" ".join(pending[:-1]) + " " + sentence)
            if parts and (follow_on or not has_code(joined) and not is_search(joined)):
                parts[-1] = parts[-1] + " " + joined
            else:
                parts.append(joined)
            pending = []
    if pending:
        rest = " ".join(pending)
        if parts:
            parts[-1] = parts[-1] + " " + rest  # detail after the last question belongs to it
        else:
            parts.append(rest)
    return "", [p.strip() for p in parts if p.strip()] or [flat or "(empty message)"]
