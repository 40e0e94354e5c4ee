"""Per-process memory of small tables of one release (ICD-10-CM chapters and sections, the
HCPCS Action Code Key...).

A release is never changed once imported (a new file makes a new release), so a table read once
per process stays true; keeping it saves a database round trip per lookup, which on PostgreSQL
is most of a lookup's time.  Keys hold the database URL, the release id and its file's sha256,
so two databases in one process (tests, the bench) never share an entry.  Only for small tables,
and bounded (cachetools' LRU): the entries of superseded releases, and of the databases a test
run or the bench made and dropped, go first; a dropped entry costs one query to load again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from cachetools import LRUCache
from sqlalchemy.orm import Session

from consultant.codes.releases import ReleaseRef

T = TypeVar("T")
MEMO_SIZE = 1024  # a release has a handful of such tables
_memo: LRUCache[tuple[str, int, str, str], Any] = LRUCache(maxsize=MEMO_SIZE)
_lock = threading.Lock()  # LRUCache is not thread-safe by itself


def per_release(session: Session, release: ReleaseRef, what: str, load: Callable[[], T]) -> T:
    """``load()``'s result for ``what`` of ``release``, computed once per process."""
    key = (str(session.get_bind().engine.url), release.id, release.sha256, what)
    with _lock:
        if key in _memo:
            return _memo[key]  # type: ignore[no-any-return]  # (a hit also refreshes it)
    value = load()
    with _lock:
        _memo[key] = value
    return value
