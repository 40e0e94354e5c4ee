"""HCPCS processing notes (CMS ``proc_notes_<MON><YYYY>.txt``, shipped in the HCPCS zip).

A code's PROCNOTE field (positions 253-256 of the HCPCS record) holds a note number; this file
holds the notes.  Layout (as published, ASCII, CRLF, tabs and spaces mixed): a title line and a
rule line, then each note starts with ``NNNN--text`` and continues on following lines; CMS pads
lines to a right-hand ``*`` margin, which is not part of the text.  Blank lines separate notes.
Note numbers must be new and increasing, so a damaged or reordered file fails instead of
attaching text to the wrong number, and the last line must end with its line end (a file cut
short mid-line fails instead of keeping half a note).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import Session

from consultant.codes.bulk import bulk_insert
from consultant.codes.files import ImportFormatError, ProgressFn, numbered, open_data
from consultant.codes.importers import LoadResult
from consultant.codes.importers.hcpcs import companion_result

NOTE_RE = re.compile(r"(\d{4})--\s*(.*)")
# Lines before the first note that are allowed: the title and underscores.
PREAMBLE_RE = re.compile(r"(PROCESSING NOTES|_+)", re.IGNORECASE)


def _clean(raw: str) -> str:
    # The right-hand margin marker and tab padding are layout, not text.
    return " ".join(raw.rstrip("\r\n").rstrip().removesuffix("*").split())


def _notes(lines: Iterator[str], path: Path, release_id: int) -> Iterator[tuple[object, ...]]:
    number: str | None = None
    parts: list[str] = []
    for lineno, raw in numbered(lines, path):
        if not raw.endswith("\n"):
            # CMS ends every line with CRLF; a last line without one was cut short, and its note
            # (or a note number cut to "01") would otherwise pass as complete text.
            raise ImportFormatError(path, lineno, "note text" if number else "note number",
                                    "the file ends inside a line (truncated?)")
        text = _clean(raw)
        if not text:
            continue
        m = NOTE_RE.fullmatch(text)
        if m:
            if number is not None:
                yield release_id, number, " ".join(parts)
            if number is not None and m.group(1) <= number:
                raise ImportFormatError(path, lineno, "note number",
                                        f"{m.group(1)} does not follow note {number}")
            number, parts = m.group(1), [m.group(2)]
            if not m.group(2):
                raise ImportFormatError(path, lineno, "note text", f"note {number} has no text")
        elif number is None:
            if not PREAMBLE_RE.fullmatch(text):
                raise ImportFormatError(path, lineno, "note number", f"expected NNNN--text: {text[:40]!r}")
        else:
            parts.append(text)
    if number is not None:
        yield release_id, number, " ".join(parts)


def load(session: Session, release_id: int, path: Path, progress: ProgressFn) -> LoadResult:
    """Load a processing-notes file (.txt, optionally .gz)."""
    with open_data(path) as data:
        count = bulk_insert(session, "codes_hcpcs_notes", ["release_id", "number", "text"],
                            _notes(data.text("latin-1", ""), path, release_id))  # type: ignore[arg-type]
    return companion_result(path, "processing notes", count, "note number", progress)
