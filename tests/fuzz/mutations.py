"""Hypothesis strategies that turn real corpus mails into hostile ones.

Each mutation is a small named function ``(raw, draw) -> raw`` so the printed counts say which
kinds of damage were tried; several can be stacked on one mail.  They imitate what broken or
malicious senders produce: broken MIME boundaries, wrong or absent charsets, NUL bytes, 10,000
parts, lines past 998 characters, deep nesting, header injection, huge headers, truncation.
"""

from __future__ import annotations

import base64
import csv
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from compressed_rtf import compress
from hypothesis import strategies as st

from tests.mail.winmail import winmail_dat

Draw = Callable[[st.SearchStrategy[Any]], Any]
Mutation = Callable[[bytes, Draw], bytes]

_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^";\r\n]+)"?', re.I)
_CHARSET = re.compile(rb'charset\s*=\s*"?([^";\s]+)"?', re.I)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
BAD_CHARSETS = [b"fakescii", b"x-unknown", b"us-askey", b"utf-7", b"utf-16", b"iso-2022-jp",
                b"x-mac-cyrillic", b"", b"utf-8\x00", b"\xff\xfe", b"../../etc/passwd"]


@cache
def corpus_paths(corpus: Path) -> list[Path]:
    with open(corpus / "INDEX.tsv", newline="") as fh:
        return [corpus / row["path"] for row in csv.DictReader(fh, delimiter="\t")]


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    match = _HEADER_END.search(raw)
    if match is None:
        return raw, b"\n\n", b""
    return raw[:match.start()], match.group(), raw[match.end():]


def _eol(raw: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in raw[:2000] else b"\n"


def break_boundaries(raw: bytes, draw: Draw) -> bytes:
    """Delimiters renamed, the closing one dropped, or the declared boundary changed."""
    found = _BOUNDARY.findall(raw)
    if not found:
        return raw
    boundary = draw(st.sampled_from(found))
    how = draw(st.sampled_from(["rename_declared", "drop_closing", "garble_delimiters", "empty"]))
    if how == "rename_declared":
        return raw.replace(b"boundary=\"" + boundary, b"boundary=\"X" + boundary, 1).replace(
            b"boundary=" + boundary, b"boundary=X" + boundary, 1)
    if how == "drop_closing":
        return raw.replace(b"--" + boundary + b"--", b"")
    if how == "garble_delimiters":
        return raw.replace(b"--" + boundary, b"--" + boundary[: len(boundary) // 2])
    return raw.replace(boundary, b"")


def wrong_charset(raw: bytes, draw: Draw) -> bytes:
    """Every declared charset replaced by an unknown or lying one, or removed."""
    bad = draw(st.sampled_from(BAD_CHARSETS))
    if not _CHARSET.search(raw):
        head, sep, body = _split(raw)
        eol = _eol(raw)
        return head + eol + b"Content-Type: text/plain; charset=" + bad + sep + body
    return _CHARSET.sub(b"charset=" + bad, raw)


def nul_bytes(raw: bytes, draw: Draw) -> bytes:
    positions = draw(st.lists(st.integers(0, max(0, len(raw))), min_size=1, max_size=20))
    data = bytearray(raw)
    for pos in sorted(positions, reverse=True):
        data[pos:pos] = b"\x00"
    return bytes(data)


def many_parts(raw: bytes, draw: Draw) -> bytes:
    """The mail as the first of up to 10,000 parts."""
    count = draw(st.sampled_from([3, 199, 201, 1000, 10_000]))
    eol = _eol(raw)
    part = b"--P" + eol + b"Content-Type: text/plain" + eol + eol + b"part" + eol
    head = (b"From: fuzz <fuzz@example.org>" + eol + b"Subject: many parts" + eol +
            b"MIME-Version: 1.0" + eol + b"Content-Type: multipart/mixed; boundary=P" + eol + eol)
    first = b"--P" + eol + b"Content-Type: message/rfc822" + eol + eol + raw + eol
    return head + first + part * count + b"--P--" + eol


def long_lines(raw: bytes, draw: Draw) -> bytes:
    """A line of 998+ characters in the header or body, with or without spaces."""
    length = draw(st.sampled_from([998, 999, 5_000, 100_000]))
    filler = draw(st.sampled_from([b"x", b"word ", b"=", b"\xe9"])) * length
    head, sep, body = _split(raw)
    where = draw(st.sampled_from(["header", "subject", "body"]))
    eol = _eol(raw)
    if where == "header":
        return head + eol + b"X-Long: " + filler + sep + body
    if where == "subject":
        return re.sub(rb"(?im)^subject:", b"Subject: " + filler.replace(b"\\", b""), head, count=1) + \
            sep + body
    return head + sep + filler + eol + body


def deep_nesting(raw: bytes, draw: Draw) -> bytes:
    depth = draw(st.sampled_from([5, 50, 150, 300, 1_000]))
    eol = _eol(raw)
    out = b"From: nest <nest@example.org>" + eol + b"Subject: nested" + eol
    for level in range(depth):
        out += b"Content-Type: multipart/mixed; boundary=n%d" % level + eol + eol + \
            b"--n%d" % level + eol
    out += b"Content-Type: message/rfc822" + eol + eol + raw + eol
    for level in reversed(range(depth)):
        out += b"--n%d--" % level + eol
    return out


def header_injection(raw: bytes, draw: Draw) -> bytes:
    """CR/LF inside From display names and Subjects, raw or as encoded words."""
    injected = draw(st.sampled_from([
        b'From: "Jane\r\nDoe" <jane.doe@clinic.example>',
        b'From: "Jane\nDoe" <jane.doe@clinic.example>',
        b"From: Jane\rDoe <jane.doe@clinic.example>",
        b"From: =?utf-8?q?Jane=0D=0ADoe?= <jane.doe@clinic.example>",
        b"From: =?utf-8?b?SmFuZQ0KQmNjOiB4QGV2aWwuZXhhbXBsZQ==?= <jane.doe@clinic.example>",
        b"Subject: hello\r\nBcc: victim@evil.example",
        b"Subject: =?utf-8?q?hi=0D=0ABcc=3A_victim=40evil.example?=",
        b"From: <>",
        b"From: \"unterminated <jane@clinic.example>",
        b"From: jane@clinic.example, john@clinic.example",
    ]))
    head, sep, body = _split(raw)
    name = injected.split(b":", 1)[0]
    head = re.sub(rb"(?im)^" + name + rb":[^\r\n]*(\r?\n[ \t][^\r\n]*)*", b"", head)
    return injected + _eol(raw) + head.lstrip(b"\r\n") + sep + body


def huge_headers(raw: bytes, draw: Draw) -> bytes:
    how = draw(st.sampled_from(["one_big", "many_small", "encoded_words", "folded"]))
    eol = _eol(raw)
    head, sep, body = _split(raw)
    if how == "one_big":
        extra = b"X-Big: " + b"a" * draw(st.sampled_from([15_000, 17_000, 70_000]))
    elif how == "many_small":
        extra = eol.join(b"X-H%d: v" % i for i in range(draw(st.sampled_from([100, 3_000, 9_000]))))
    elif how == "encoded_words":
        extra = b"To: " + b", ".join(b"=?utf-8?q?a=C3=A9?= <a%d@x.example>" % i
                                      for i in range(draw(st.sampled_from([50, 300, 8_000]))))
    else:
        extra = b"X-Folded: a" + (eol + b" b") * draw(st.sampled_from([100, 5_000]))
    return head + eol + extra + sep + body


def truncate(raw: bytes, draw: Draw) -> bytes:
    return raw[: draw(st.integers(0, len(raw)))]


def flip_bytes(raw: bytes, draw: Draw) -> bytes:
    if not raw:
        return raw
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 30))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def huge_body(raw: bytes, draw: Draw) -> bytes:
    size = draw(st.sampled_from([150_000, 1_000_000, 5_000_000]))
    unit = draw(st.sampled_from([b"Can 77301 and 77338 be billed together? ", b"x", b"<p>a</p>"]))
    head, sep, body = _split(raw)
    return head + sep + unit * (size // len(unit)) + body


def no_header_separator(raw: bytes, draw: Draw) -> bytes:
    head, _, body = _split(raw)
    return head + _eol(raw) + body


def eight_bit_headers(raw: bytes, draw: Draw) -> bytes:
    junk = draw(st.binary(min_size=1, max_size=200))
    head, sep, body = _split(raw)
    return head + _eol(raw) + b"Subject: " + junk.replace(b"\n", b" ").replace(b"\r", b" ") + sep + body


# RTF bodies that cost the most to read: striprtf's regular expressions backtrack on these
# (hyperlink fields and a font table without semicolons, all on one line), and a body of dense
# codes near the compressed-size limit.  Compressed once each (compressed_rtf's encoder is slow).
HOSTILE_RTF = {
    "fields": b"{\\rtf1\\ansi " + b'{\\field{\\*\\fldinst{ HYPERLINK "x" ' * 4_000 + b"}",
    "font_table": b"{\\rtf1\\ansi{\\fonttbl " + b"\\f1\\fcharset0 a" * 2_000 + b"}Is 99213 payable?}",
    "dense_codes": b"{\\rtf1\\ansi " + b"99213 J45.909 77301-59\\par " * 16_000 + b"}",
}


@cache
def _compressed_rtf(name: str) -> bytes:
    return bytes(compress(HOSTILE_RTF[name]))


def rtf_winmail(raw: bytes, draw: Draw) -> bytes:
    """The mail forwarded inside a mail whose only body is a hostile RTF winmail.dat."""
    data = winmail_dat(_compressed_rtf(draw(st.sampled_from(sorted(HOSTILE_RTF)))))
    eol = _eol(raw)
    body = base64.encodebytes(data).replace(b"\n", eol)
    return (b"From: rtf <rtf@example.org>" + eol + b"Subject: rich text" + eol +
            b"MIME-Version: 1.0" + eol + b"Content-Type: multipart/mixed; boundary=W" + eol + eol +
            b"--W" + eol + b"Content-Type: application/ms-tnef; name=winmail.dat" + eol +
            b"Content-Transfer-Encoding: base64" + eol + eol + body + eol +
            b"--W" + eol + b"Content-Type: message/rfc822" + eol + eol + raw + eol + b"--W--" + eol)


MUTATIONS: dict[str, Mutation] = {fn.__name__: fn for fn in (
    break_boundaries, wrong_charset, nul_bytes, many_parts, long_lines, deep_nesting,
    header_injection, huge_headers, truncate, flip_bytes, huge_body, no_header_separator,
    eight_bit_headers, rtf_winmail)}


@st.composite
def mutated_mails(draw: Draw, corpus: Path) -> tuple[str, list[str], bytes]:
    """(corpus path, mutations applied, resulting bytes)."""
    path = draw(st.sampled_from(corpus_paths(corpus)))
    raw = path.read_bytes()
    names = draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3))
    for name in names:
        raw = MUTATIONS[name](raw, draw)
    return str(path.relative_to(corpus)), names, raw
