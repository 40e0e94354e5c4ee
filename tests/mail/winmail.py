"""winmail.dat (TNEF) files for tests: an RTF-only body, the way Outlook's "rich text" sends it.

No Python library writes TNEF, so the container is put together here from its documented layout
([MS-OXTNEF] 2.1.3: signature, key, then attributes of level, id, type, length, data and a
16-bit checksum; the body is the PR_RTF_COMPRESSED MAPI property inside attMAPIProps).  The
RTF inside is compressed with compressed_rtf's own encoder, and the result is read back by
tnefparse in the code under test: nothing here decides what the reader sees.
"""

from __future__ import annotations

import struct
from email.message import EmailMessage

from compressed_rtf import compress

_SIGNATURE = 0x223E9F78
_LVL_MESSAGE = 1
_ATT_TNEF_VERSION, _ATT_OEM_CODEPAGE, _ATT_MAPI_PROPS = 0x9006, 0x9007, 0x9003
_ATP_BYTE, _ATP_DWORD = 0x0006, 0x0008
_PT_BINARY, _PR_RTF_COMPRESSED = 0x0102, 0x1009


def _attribute(name: int, kind: int, data: bytes) -> bytes:
    return (struct.pack("<BHHI", _LVL_MESSAGE, name, kind, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def winmail_dat(compressed: bytes) -> bytes:
    """A TNEF stream whose only body is the given compressed-RTF bytes."""
    props = (struct.pack("<IHH", 1, _PT_BINARY, _PR_RTF_COMPRESSED)
             + struct.pack("<II", 1, len(compressed)) + compressed + b"\0" * (-len(compressed) % 4))
    return (struct.pack("<IH", _SIGNATURE, 0x5A1E)
            + _attribute(_ATT_TNEF_VERSION, _ATP_DWORD, struct.pack("<I", 0x10000))
            + _attribute(_ATT_OEM_CODEPAGE, _ATP_BYTE, struct.pack("<II", 1252, 0))
            + _attribute(_ATT_MAPI_PROPS, _ATP_BYTE, props))


def rtf_only_mail(rtf: bytes, *, compressed: bool = True, sender: str = "coder@clinic.test") -> bytes:
    """An Outlook-style mail: no text part, the body only as RTF inside winmail.dat."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "consult@cc.test", "rich text question"
    msg.add_attachment(winmail_dat(compress(rtf, compressed=compressed)), maintype="application",
                       subtype="ms-tnef", filename="winmail.dat")
    return msg.as_bytes()
