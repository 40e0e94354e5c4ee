"""Reading operator-supplied data files: gzip transparency, checksums and progress reporting."""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO, TypeVar

T = TypeVar("T")


class ImportFormatError(ValueError):
    """A data file does not match its layout; the message names the line and the field."""

    def __init__(self, path: Path | str, line: int | None, field: str, problem: str) -> None:
        where = f"{Path(path).name}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}, field {field}: {problem}")
        self.line = line
        self.field = field


# What a truncated or corrupt .gz raises while being read.
CORRUPT_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile)


def numbered(lines: Iterable[T], path: Path, first: int = 1) -> Iterator[tuple[int, T]]:
    """``enumerate`` that turns a corrupt/truncated compressed stream into ImportFormatError.

    The error surfaces while the *next* line is being read, so it names that line.
    """
    it = iter(lines)
    lineno = first
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except CORRUPT_ERRORS as exc:
            raise ImportFormatError(path, lineno, "file", f"truncated or corrupt compressed data ({exc})") from None
        yield lineno, item
        lineno += 1


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file as stored (a .gz file is hashed compressed)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def logical_name(path: Path) -> str:
    """The file name without a trailing .gz (what the publisher called it)."""
    return path.name[:-3] if path.name.lower().endswith(".gz") else path.name


ProgressFn = Callable[[int, int], None]
"""Called with (rows done, fraction of the file read in thousandths)."""


class Progress:
    """Plain-text progress on a stream (stderr by default), at most a few lines per second.

    Plain lines rather than a redrawn bar: the output stays readable when captured to a log.
    """

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 1.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.interval = interval
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, rows: int, permille: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and permille < 1000:
            return
        self._last = now
        print(
            f"{self.label}: {rows:,} rows, {permille / 10:.0f}% of file, "
            f"{now - self.started:.1f} s",
            file=self.stream,
            flush=True,
        )


class _CountingReader(io.RawIOBase):
    """Counts bytes read from the underlying (possibly compressed) file for progress."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


class DataFile:
    """An open data file: ``binary`` yields decompressed bytes; ``permille()`` tracks reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = max(path.stat().st_size, 1)
        self._fh = path.open("rb")
        self._counter = _CountingReader(self._fh)
        counted = io.BufferedReader(self._counter, buffer_size=1 << 16)
        self.binary: BinaryIO = (
            gzip.GzipFile(fileobj=counted)  # type: ignore[assignment]
            if path.name.lower().endswith(".gz")
            else counted
        )

    def permille(self) -> int:
        return min(1000, self._counter.count * 1000 // self.size)

    def text(self, encoding: str, newline: str | None = None) -> TextIO:
        return io.TextIOWrapper(self.binary, encoding=encoding, newline=newline)  # type: ignore[arg-type]

    def close(self) -> None:
        self._fh.close()


@contextmanager
def open_data(path: Path) -> Iterator[DataFile]:
    """Open ``path`` (plain or .gz) for an importer."""
    data = DataFile(path)
    try:
        yield data
    finally:
        data.close()


def read_all(path: Path) -> bytes:
    """The decompressed content of a small file (xlsx workbooks are read whole)."""
    with open_data(path) as data:
        return data.binary.read()
