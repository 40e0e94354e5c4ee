"""Cut a mail's text into its questions; nothing is dropped.

Numbered, lettered or bulleted items are questions when the sender numbered them; otherwise each
sentence ending in "?" is one, with the statements before it as its context.  A text with no "?"
is one question.  Inside a question, each ask joined by "and"/"also" + a question word ("how many
units of J1885 do I bill, and do I also bill 96372?") is an ask of its own; the pipeline types
the asks and joins neighbours of one question that turn out to ask the same thing.  Codes are not
searched here: each ask is given the codes ``extract`` found whose text lies inside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_ITEM = re.compile(r"^\s*(?:(?:Q(?:uestion)?\s*)?(\d{1,2})[.):]|Q(?:uestion)?\s*(\d{1,2})\s*[-:.)]|\(?([a-h])[.)]\s|[-*•]\s+(?=.*\?))\s*", re.I)
# Where one question holds a second ask: ", and do I also bill …", " and which modifier …", "; also …".
_ASK_SPLIT = re.compile(r"(?:,\s*(?:and|also|plus|or)|\s+and(?:\s+also)?|\s+or|;\s*(?:and\s+|also\s+)?)\s+"
                        r"(?=(?:do|does|did|can|could|should|would|will|is|are|am|how|what|which|where|when|if|need|must|may)\b)"
                        r"|\s+-\s+(?=(?:do|does|can|should|is|are|how|what|which|need)\b)", re.I)
_LAST_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[^.!?]+\?+\s*$)")
_SENTENCE_END = re.compile(r"(?<=[?])\s+|(?<=[.!])\s+(?=[A-Z0-9(\"'])")
# "…J3420 x 1000 or x1?? plus 96372?", "…60mg + JZ? or j0897 x1?": the same question again.
_ALTERNATIVE = re.compile(r"^\s*(or|plus|&)\b", re.I)
# A sentence that asks something of its own even without a code ("which modifier goes where?").
_ASKS_SOMETHING = re.compile(r"\b(modifiers?|units?|MUE|bundl\w*|together|separately|add-?on|primary|diagnos\w*|dx|"
                             r"sequenc\w*|JW|JZ|25|59|X[EPSU]|code|billable|valid|denied|covered)\b", re.I)
_GREETING = re.compile(r"^\s*(hi|hello|dear|good (morning|afternoon|evening)|hey)\b(\s+(all|there|team|everyone|folks|guys|"
                       r"[A-Z][a-z]+))?\s*[,!:.-]*[ \t]*(\n|$)?", re.I | re.M)
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


def asks(question: str) -> list[str]:
    """The asks inside one question, in order (one when it asks one thing).  Only the sentence
    that asks is cut; the statements before it stay with its first ask as context."""
    head = _LAST_SENTENCE.split(question, maxsplit=1)
    context, asking = (head[0] + " ", head[1]) if len(head) == 2 else ("", question)
    pieces = [p.strip(" ,;") for p in _ASK_SPLIT.split(asking)]
    pieces = [p for p in pieces if p] or [asking]
    pieces[0] = context + pieces[0]
    return pieces


def split(text: str, has_code: Callable[[str], bool], is_search: Callable[[str], bool]) -> tuple[str, list[str]]:
    """(preamble, question texts), at least one question for any non-empty text."""
    body = clean(text) or text.strip()
    items: list[list[str]] = []
    preamble: list[str] = []
    for line in body.split("\n"):
        m = _ITEM.match(line)
        if m and (m.group(1) or m.group(2) or m.group(3) or line.strip().startswith(("-", "*", "•"))):
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
            alternative = bool(_ALTERNATIVE.match(sentence)) and len(sentence.split()) <= 6
            if parts and (alternative or not has_code(joined) and not is_search(joined)
                          and not _ASKS_SOMETHING.search(sentence)):
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
