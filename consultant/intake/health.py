"""Is every mailbox being read?  One answer per configured mailbox, from its state row.

A mailbox is *stale* when it has not fetched for its ``alert_after_minutes`` (a
``[[imap.mailboxes]]`` table's own, else ``[imap]``'s), or has been failing that long without
ever fetching.  A mailbox with no state row yet has simply not been
polled since it was configured: reported as ``unknown``, not as a failure, so a fresh start
does not page anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultant.models import ImapState, utcnow
from consultant.settings import ImapSettings


@dataclass(frozen=True)
class MailboxHealth:
    mailbox: str
    folder: str
    status: str  # ok | stale | unknown
    last_fetch_at: datetime | None
    last_error: str | None
    failures: int

    def as_json(self) -> dict[str, object]:
        return {"mailbox": self.mailbox, "folder": self.folder, "status": self.status,
                "last_fetch_at": self.last_fetch_at.isoformat() if self.last_fetch_at else None,
                "last_error": self.last_error, "failures": self.failures}


def mailbox_health(session: Session, imap: ImapSettings, now: datetime | None = None) -> list[MailboxHealth]:
    now = now or utcnow()
    states = {(s.mailbox, s.folder): s for s in session.execute(select(ImapState)).scalars()}
    result = []
    for cfg in imap.all_mailboxes():
        state = states.get((cfg.label, cfg.folder))
        if state is None:
            result.append(MailboxHealth(cfg.label, cfg.folder, "unknown", None, None, 0))
            continue
        # An idle mailbox still "fetches" at every IDLE timeout (minutes), so silence this
        # long means the poller is failing or gone.
        since = state.last_fetch_at or state.failing_since
        stale = since is not None and now - since >= timedelta(minutes=cfg.alert_after_minutes)
        result.append(MailboxHealth(cfg.label, cfg.folder, "stale" if stale else "ok",
                                    state.last_fetch_at, state.last_error, state.failures or 0))
    return result
