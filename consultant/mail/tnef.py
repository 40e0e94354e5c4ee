"""Outlook's ``winmail.dat`` (``application/ms-tnef``): its body text and attachment list.

Outlook wraps a message's body and attachments into one TNEF part when it sends "rich text";
without reading it the question is invisible.  tnefparse (a maintained pure-Python decoder)
reads it; only the plain-text and HTML bodies are taken, and the attachments are listed by name
and size, never written anywhere or opened.  A body held only as compressed RTF is reported,
not decoded.  The part is size-capped before decoding, like every other part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tnefparse import TNEF

log = logging.getLogger(__name__)
MAX_TNEF_BYTES = 10_000_000


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


def read_tnef(data: bytes) -> TnefContent:
    """Body and attachment list of a winmail.dat; an unreadable one yields a note, not an error."""
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
    if not content.text and not content.html:
        content.note = ("winmail.dat holds its text only as RTF, which is not read"
                        if getattr(tnef, "_rtfbody", None) else "winmail.dat holds no readable text")
    return content
