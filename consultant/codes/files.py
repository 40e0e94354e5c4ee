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

from tqdm import tqdm

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
    """An import's progress on stderr: a tqdm bar on a terminal; on a pipe or a log file, where
    a redrawn bar would be one endless line of carriage returns, a plain line every
    ``interval`` seconds and a last one at :meth:`close` (rows, share of the file read, time).

    Called as a :data:`ProgressFn` with (rows done, thousandths of the file read).  The share
    may go down again (a multi-file release restarts it per file) and may be 1000 while rows
    are still being written, so only :meth:`close` marks the end.
    """

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 30.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started
        self.rows = self.permille = 0
        self.closed = False
        self.bar: tqdm | None = None
        if self.stream.isatty():
            self.bar = tqdm(total=1000, desc=label, file=self.stream, leave=True, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}% of file|{bar}| {postfix} [{elapsed}]")

    def __call__(self, rows: int, permille: int) -> None:
        self.rows, self.permille = rows, permille
        if self.bar is not None:
            self.bar.n = permille
            self.bar.set_postfix_str(f"{rows:,} rows", refresh=False)
            self.bar.update(0)  # redraws at most every tqdm mininterval
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._line(now)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.refresh()
            self.bar.close()
        else:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        print(f"{self.label}: {self.rows:,} rows, {self.permille / 10:.0f}% of file, "
              f"{now - self.started:.1f} s", file=self.stream, flush=True)


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
