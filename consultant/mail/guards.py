"""Cheap checks and repairs on raw bytes, made before the stdlib parser sees a message.

The stdlib parser is correct but not defensive: a To header of ~8,000 encoded words drives it
to ~425 MiB (``jstedfast-mimekit/messages/stack-overflow.txt``), 10,000 MIME parts take ~2 s
of CPU, 1,000 nested multiparts end in ``RecursionError``.  Each limit below is checked on the
bytes in linear time, so a hostile message is quarantined with a reason before it can cost
seconds.  The repair is the other half: a sender's client that puts a bare CR or LF inside a
header (seen in a From display name) makes the parser end the header block early, and the valid
sender address lands in the body; joining such broken lines back into their field lets us
answer the person instead of quarantining them.  The stored raw bytes are never changed: the
repair applies only to the copy that is parsed.
"""

from __future__ import annotations

import re

MAX_HEADER_BYTES = 64 * 1024
MAX_SINGLE_HEADER_BYTES = 16 * 1024
MAX_PARTS = 200


class MailParseError(Exception):
    """The message cannot be parsed safely; ``str(exc)`` is the quarantine reason."""


def split_header_block(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, rest); the separator is b"" when there is no blank line."""
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    candidates = [(pos, sep) for pos, sep in ((crlf, b"\r\n\r\n"), (lf, b"\n\n")) if pos != -1]
    if not candidates:
        return raw, b"", b""
    pos, sep = min(candidates)
    return raw[:pos], sep, raw[pos + len(sep):]


def check_header_limits(raw: bytes) -> None:
    """Reject messages whose header block would make the stdlib parser pathological."""
    block = split_header_block(raw)[0]
    if len(block) > MAX_HEADER_BYTES:
        raise MailParseError(f"header block too large ({len(block)} bytes > {MAX_HEADER_BYTES})")
    current = 0
    for line in block.splitlines():
        if line[:1] in (b" ", b"\t"):
            current += len(line)
        else:
            current = len(line)
        if current > MAX_SINGLE_HEADER_BYTES:
            name = line.split(b":", 1)[0][:40].decode("ascii", "replace")
            raise MailParseError(f"header field too large (> {MAX_SINGLE_HEADER_BYTES} bytes): {name}")


_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_DELIMITER = re.compile(rb"^--([^\r\n]{1,202})", re.M)


def check_part_limits(raw: bytes) -> None:
    """Reject a message with more MIME parts than :data:`MAX_PARTS` before parsing it.

    Counts the declared boundaries (a nested multipart declares one each, so deep nesting is
    caught too) and the delimiter lines that use one of them.  Lines that merely start with
    ``--`` (signatures, rulers) do not count unless they match a declared boundary.
    """
    declared = {a or b for a, b in _BOUNDARY.findall(raw)}
    if len(declared) > MAX_PARTS:
        raise MailParseError(f"too many MIME parts ({len(declared)} multipart boundaries > {MAX_PARTS})")
    if not declared:
        return
    delimiters = 0
    for match in _DELIMITER.finditer(raw):
        token = match.group(1).rstrip()
        if token in declared or (token.endswith(b"--") and token[:-2] in declared):
            delimiters += 1
    # Each part has one opening delimiter; each multipart one closing delimiter more.
    if delimiters > MAX_PARTS + len(declared):
        raise MailParseError(f"too many MIME parts ({delimiters} delimiter lines > {MAX_PARTS})")


# RFC 5322 field name; obsolete syntax allows white space before the colon (RFC 5322 §4.5).
_FIELD = re.compile(rb"^[!-9;-~]{1,100}[ \t]*:")
# Fields that only a mail program writes: a line with one of these names right after a run of
# nameless lines proves the run is still in the header block (a body line "Question: ..."
# does not).
_KNOWN_FIELD = re.compile(
    rb"^(from|to|cc|bcc|subject|date|message-id|in-reply-to|references|reply-to|sender|"
    rb"mime-version|content-[a-z-]+|received|return-path|delivered-to|x-[!-9;-~]+|"
    rb"dkim-signature|arc-[a-z-]+|authentication-results|list-[a-z-]+|precedence|"
    rb"auto-submitted|thread-[a-z]+|importance|user-agent)[ \t]*:", re.I)
# A CR that is not part of a line end: the parser would end the header line there.
_INNER_CR = re.compile(rb"\r(?![\r\n]|$)")
MAX_JOINED_RUN = 20


def repair_headers(raw: bytes) -> tuple[bytes, list[str]]:
    """The message with broken header lines joined back into their field, and what was done.

    Mail clients and scripts that put a raw CR or LF into a header value (seen inside a From
    display name) cut the field in two; the parser then ends the header block at the nameless
    second half and every later header, the sender's among them, is read as body.  Mended here:

    - a CR inside a header line (not a line end) becomes a space;
    - a nameless line that ends a quote or ``<`` left open by the field above, or a short run of
      nameless lines directly followed by a field only mail programs write (``Received:``,
      ``To:``, ``X-...:``), becomes a continuation of the field above.

    Other nameless lines are left alone: they are the start of a body that lacks its blank
    line (or a MIME delimiter), which the parser already handles.  Mixed CRLF/LF line ends are
    not touched: they are common in mail saved to files and harmless.
    """
    block, sep, rest = split_header_block(raw)
    if b"\n" not in block:
        # CR-only line ends (classic Mac OS mail, sisimai's maildir/mac set): CR is the line end
        # there, and the parser reads such mail as it is.
        return raw, []
    repairs: list[str] = []
    fixed = _INNER_CR.sub(b" ", block.replace(b"\r\n", b"\n"))
    if fixed != block.replace(b"\r\n", b"\n"):
        repairs.append("CR inside a header line replaced by a space")
    lines = fixed.split(b"\n")
    joined = 0
    logical = lines[0]
    index = 1
    while index < len(lines):
        line = lines[index]
        if not line or line[:1] in (b" ", b"\t") or _FIELD.match(line):
            logical = logical + line if line[:1] in (b" ", b"\t") else line
            index += 1
            continue
        end = index
        while end < len(lines) and lines[end] and lines[end][:1] not in (b" ", b"\t") and \
                not _FIELD.match(lines[end]):
            end += 1
        run = range(index, end)
        followed = end < len(lines) and bool(_KNOWN_FIELD.match(lines[end]))
        if _unclosed(logical) or (followed and len(run) <= MAX_JOINED_RUN and
                                  not any(lines[i].startswith(b"--") for i in run)):
            for i in run:
                lines[i] = b" " + lines[i]
                logical += lines[i]
            joined += len(run)
        index = end
    if joined:
        repairs.append(f"{joined} header line(s) without a field name joined to the field above")
    if not repairs:
        return raw, []
    eol = b"\r\n" if b"\r\n" in block else b"\n"
    return eol.join(lines) + sep + rest, repairs


def _unclosed(field: bytes) -> bool:
    """A quoted display name or an angle-bracketed address left open (cut by a line break)."""
    return field.count(b'"') % 2 == 1 or field.count(b"<") > field.count(b">")
