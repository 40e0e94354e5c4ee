"""Identifiers out of HTML: text nodes and the attributes a reader sees or follows.

Detection runs over the text of the whole document at once (a cue and its value often sit in
different elements: ``<b>DOB:</b> 04/17/1961``), then each hit is cut out of the node(s) it
covers.  The markup is rebuilt from the parser's events, so tags stay as the sender wrote them;
the console sanitises the result (nh3) before showing it, as it does any sender HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser

from consultant.privacy.detect import detect
from consultant.privacy.hits import Hit
from consultant.privacy.kinds import PLACEHOLDERS, Kind
from consultant.privacy.redact import Redacted, apply

_READ_ATTRS = {"href", "src", "title", "alt", "value", "placeholder", "data", "content"}
# Text nodes are joined by one space: "<b>DOB:</b> 04/17/1961" and "<td>Patient</td><td>Ann Lee"
# read as the sentence a person sees.
_BLOCK_SEP = " "


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # ("text", str) | ("raw", str) | ("attrs", tag, attrs, closed) events, in order.
        self.events: list[tuple[object, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("tag", tag, attrs, False))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("tag", tag, attrs, True))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("raw", f"</{tag}>"))

    def handle_data(self, data: str) -> None:
        self.events.append(("text", data))

    def handle_comment(self, data: str) -> None:
        pass  # comments can carry identifiers and are never shown: dropped

    def handle_decl(self, decl: str) -> None:
        self.events.append(("raw", f"<!{decl}>"))


@dataclass
class RedactedHtml(Redacted):
    """The hits' spans index different strings (the joined text, or one attribute's value), so
    the removed values themselves are returned beside them, read from the string each hit is in.
    """

    values: list[tuple[Kind, str]] = field(default_factory=list, repr=False)


def redact_html(html: str, *, allowed_emails: Sequence[str] = (),
                known_names: Sequence[str] = ()) -> RedactedHtml:
    """``html`` with identifiers replaced in its text and readable attributes.

    The document is parsed once here: a large HTML part costs most of a mail's processing time
    in ``html.parser`` (a 200,000-character part about 0.3 s of CPU per parse).
    """
    parser, texts, joined = _parse(html)
    hits = detect(joined, allowed_emails=allowed_emails, known_names=known_names)
    all_hits = list(hits)
    values = [(h.kind, joined[h.start:h.end]) for h in hits]
    out: list[str] = []
    node = 0
    for event in parser.events:
        if event[0] == "text":
            start, text = texts[node]
            node += 1
            out.append(escape(_cut(text, start, hits), quote=False))
        elif event[0] == "tag":
            _, tag, attrs, closed = event
            parts = [str(tag)]
            for name, value in attrs:  # type: ignore[attr-defined]
                if value is None:
                    parts.append(name)
                    continue
                if name in _READ_ATTRS:
                    red = detect(value, allowed_emails=allowed_emails, known_names=known_names)
                    all_hits += red
                    values += [(h.kind, value[h.start:h.end]) for h in red]
                    value = apply(value, red)
                parts.append(f'{name}="{escape(value)}"')
            out.append("<" + " ".join(parts) + (" />" if closed else ">"))
        else:
            out.append(str(event[1]))
    return RedactedHtml("".join(out), all_hits, values)


def html_text(html: str) -> str:
    """The text nodes of ``html`` joined as detection reads them."""
    return _parse(html)[2]


def _parse(html: str) -> tuple[_Collector, list[tuple[int, str]], str]:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    # One string of all text nodes, with the offset where each node starts.
    texts: list[tuple[int, str]] = []
    pos = 0
    for event in parser.events:
        if event[0] == "text":
            texts.append((pos, str(event[1])))
            pos += len(str(event[1])) + len(_BLOCK_SEP)
    return parser, texts, _BLOCK_SEP.join(t for _, t in texts)


def _cut(text: str, offset: int, hits: Sequence[Hit]) -> str:
    """The part of the joined text that is this node, with the hits inside it replaced; a hit
    that spans nodes leaves its placeholder in the first node and removes the rest."""
    end = offset + len(text)
    out, last = [], offset
    for hit in hits:
        if hit.end <= offset or hit.start >= end:
            continue
        s, e = max(hit.start, offset), min(hit.end, end)
        out.append(text[last - offset:s - offset])
        if hit.start >= offset:
            out.append(PLACEHOLDERS[hit.kind])
        last = e
    out.append(text[last - offset:])
    return "".join(out)
