"""The new text a sender wrote: HTML converted to text, quoted replies and signatures removed.

Quoted earlier mail must not be read again as a new question (a follow-up quoting our own
answer would otherwise re-extract every code we cited), so the cut is conservative: the first
reply header ("On … wrote:", Outlook's "-----Original Message-----" or a "From:/Sent:" block)
ends the new text, and ``>`` lines are dropped wherever they are.
"""

from __future__ import annotations

import re

import html2text

from consultant.mail.parse import MAX_HTML_CHARS, MAX_TEXT_CHARS, MailView, shorten

_REPLY_HEADERS = [
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*Forwarded message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),
]
_OUTLOOK_FROM = re.compile(r"^\s*\**From:\**\s.+$", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(r"^\s*\**(Sent|Date|To|Subject):\**\s", re.IGNORECASE)


def html_to_text(html: str) -> str:
    """Readable text from sender HTML (links kept as text, images dropped, no wrapping)."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = False
    try:
        return converter.handle(html[:MAX_HTML_CHARS])
    except Exception:  # noqa: BLE001 - broken HTML must not stop the pipeline
        return re.sub(r"<[^>]+>", " ", html)


def strip_quotes(text: str) -> str:
    """Keep only what the sender wrote above any quoted earlier message or signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if any(p.match(line) for p in _REPLY_HEADERS):
            break
        if _OUTLOOK_FROM.match(line) and any(
            _OUTLOOK_NEXT.match(nxt) for nxt in lines[index + 1:index + 4]
        ):
            break
        if line.rstrip() == "--" and line.startswith("--"):
            break  # RFC 3676 signature separator ("-- ")
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def new_text(view: MailView) -> str:
    """The sender's own words in plain text, for code extraction and question typing."""
    text = view.text if view.text.strip() else (html_to_text(view.html) if view.html else "")
    return strip_quotes(shorten(text, MAX_TEXT_CHARS))
