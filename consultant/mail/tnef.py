"""Outlook's ``winmail.dat`` (``application/ms-tnef``): its body text and attachment list.

Outlook wraps a message's body and attachments into one TNEF part when it sends "rich text";
without reading it the question is invisible.  tnefparse (a maintained pure-Python decoder)
reads it; the plain-text and HTML bodies are taken as they are, and a body held only as
compressed RTF (Outlook's "rich text" format, e.g. the corpus's mimekit ``rich-text.eml``) is
decompressed with compressed_rtf and read as text with striprtf.  The attachments are listed by
name and size, never written anywhere or opened.  The part is size-capped before decoding, like
every other part, and so is the compressed RTF.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from compressed_rtf import decompress
from striprtf.striprtf import rtf_to_text
from tnefparse import TNEF

log = logging.getLogger(__name__)
MAX_TNEF_BYTES = 10_000_000
# Compressed RTF expands at most ~8x (a control byte and eight 2-byte references of up to 17
# bytes each), so 64 kB holds ~500 kB of RTF: ~0.2 s to decompress and ~0.2 s to read as text
# (pure Python, measured), leaving most of the 2 s a mail may take to the drafting.  A real question's RTF body is a few
# kB (the corpus's rich-text.eml: 5 kB compressed, 15 kB of RTF); larger ones carry pictures.
MAX_RTF_COMPRESSED_BYTES = 64_000
# A control word (backslash and a letter) as opposed to a control symbol (\\, \{, \'e9, ...).
_CONTROL = re.compile(r"\\[a-zA-Z]|\\.", re.DOTALL)


@dataclass
class TnefContent:
    text: str = ""
    html: str | None = None
    attachments: list[dict[str, object]] = field(default_factory=list)
    note: str = ""


def _decode(data: bytes | str | None, codepage: object) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    for charset in (f"cp{codepage}" if codepage else "", "utf-8", "cp1252"):
        if not charset:
            continue
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def rtf_text(rtf: str) -> str:
    """Plain text of an RTF document, in time linear in its length.

    striprtf's two passes before its tokenizer (hyperlink fields rewritten as ``text(url)``, and
    the font table's charsets) are regular expressions that backtrack catastrophically when one
    line holds many candidates: 800 ``{\\field{\\*\\fldinst{ HYPERLINK "x"`` on one line took
    6.7 s, and a 3.7 kB font table of ``\\f1\\fcharset0 a`` without semicolons did not finish in
    five minutes (measured on striprtf 0.0.35).  RTF readers ignore line breaks in the stream,
    so every control word is put on a line of its own first: neither pass can then match (both
    need two control words on one line), links read as their visible text and fonts use the
    document's code page (``\\ansicpg``); the text is otherwise the same (checked on the corpus's
    rich-text.eml).
    """
    spaced = _CONTROL.sub(lambda m: "\n" + m[0] if m[0][1].isalpha() else m[0], rtf)
    return str(rtf_to_text(spaced, errors="replace"))


def _rtf_body(compressed: bytes) -> tuple[str, str]:
    """(text, note) of a compressed RTF body; the note says why no text came out."""
    if len(compressed) > MAX_RTF_COMPRESSED_BYTES:
        return "", (f"winmail.dat's RTF body of {len(compressed):,} bytes not read "
                    f"(limit {MAX_RTF_COMPRESSED_BYTES:,})")
    try:
        rtf = decompress(compressed)
        # RTF is 7-bit text with \'xx escapes; latin-1 maps any stray 8-bit byte to one character.
        text = rtf_text(rtf.decode("latin-1")).replace("\x00", "")
    except Exception as exc:  # noqa: BLE001 - corrupt or hostile RTF: noted, the mail goes on
        log.info("unreadable RTF body in winmail.dat: %s", exc)
        return "", f"winmail.dat's RTF body could not be read ({type(exc).__name__})"
    return (text, "") if text.strip() else ("", "winmail.dat's RTF body holds no text")


def read_tnef(data: bytes, want_body: bool = True) -> TnefContent:
    """Body and attachment list of a winmail.dat; an unreadable one yields a note, not an error.

    ``want_body=False`` when the mail's text is already known: the RTF body, the one costly part
    to read, is then left alone.
    """
    if len(data) > MAX_TNEF_BYTES:
        return TnefContent(note=f"winmail.dat of {len(data)} bytes not read (limit {MAX_TNEF_BYTES})")
    try:
        tnef = TNEF(data, do_checksum=False)
        content = TnefContent(text=_decode(tnef.body, tnef.codepage).replace("\x00", ""),
                              html=_decode(tnef.htmlbody, tnef.codepage).replace("\x00", "") or None)
        for attachment in tnef.attachments:
            name = attachment.long_filename() or attachment.name or ""
            content.attachments.append({
                "filename": _decode(name, None).replace("\x00", "")[:255] if name else "",
                "content_type": "application/octet-stream (in winmail.dat)",
                "size": len(attachment.data or b"")})
    except Exception as exc:  # noqa: BLE001 - hostile or truncated TNEF: listed, not read
        log.info("unreadable winmail.dat: %s", exc)
        return TnefContent(note=f"winmail.dat could not be read ({type(exc).__name__})")
    if content.text or content.html:
        return content
    # The stored (compressed) bytes, not tnefparse's ``rtfbody`` property: that one decompresses
    # with no size limit, and its size must be checked first.
    compressed = tnef._rtfbody
    if not isinstance(compressed, bytes) or not compressed:
        content.note = "winmail.dat holds no readable text"
    elif want_body:
        content.text, content.note = _rtf_body(compressed)
    return content
