"""Fast batched inserts inside the caller's transaction (executemany on SQLite, COPY on PostgreSQL).

The ORM would spend most of an import building objects; the PTP table alone has 2.5 million rows.
Rows arrive as tuples already in database form: dates as ISO strings, JSON as dumped text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice

from sqlalchemy.orm import Session

BATCH = 50_000


def bulk_insert(
    session: Session,
    table: str,
    columns: list[str],
    rows: Iterable[tuple[object, ...]],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Insert ``rows`` into ``table`` in batches; return the number inserted.

    Uses the session's own connection, so the rows commit or roll back with the caller's
    transaction (an import is all-or-nothing).
    """
    conn = session.connection()
    driver = conn.connection.driver_connection
    dialect = conn.dialect.name
    collist = ", ".join(columns)
    done = 0
    iterator = iter(rows)
    if dialect == "postgresql":
        with driver.cursor() as cur:  # type: ignore[union-attr]
            # The batch is drawn *before* COPY starts: producing rows may run SQL on this same
            # connection (e.g. a new PTP rationale row), which would block inside a COPY.
            while batch := list(islice(iterator, BATCH)):
                with cur.copy(f"COPY {table} ({collist}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                done += len(batch)
                if on_batch:
                    on_batch(done)
        return done
    placeholders = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table} ({collist}) VALUES ({placeholders})"
    cur = driver.cursor()  # type: ignore[union-attr]
    try:
        while batch := list(islice(iterator, BATCH)):
            cur.executemany(sql, batch)
            done += len(batch)
            if on_batch:
                on_batch(done)
    finally:
        cur.close()
    return done
