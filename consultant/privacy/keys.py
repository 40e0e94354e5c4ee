"""Key rotation for the raw mail at rest: every stored mail re-encrypted with the newest key.

Rotation is three steps (README, "Patient identifiers"): put a new key first in
``[privacy] raw_mail_keys``, run ``caseconsultant keys rotate``, then remove the old key.
Reading a mail decrypts it with whichever configured key opens it; writing it back encrypts
with the first.  Batches commit one by one, so a stop half-way leaves every mail readable with
the key list of step 1, and running it again finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import flag_modified

from consultant.models import InboundMail


def rotate(factory: sessionmaker[Session], *, batch: int = 200,
           progress: Callable[[int], None] | None = None) -> int:
    """Re-encrypt every stored raw mail with the first key; returns how many were rotated."""
    done, last_id = 0, 0
    while True:
        with factory() as session, session.begin():
            mails = list(session.execute(
                select(InboundMail).where(InboundMail.id > last_id, InboundMail.raw.is_not(None))
                .order_by(InboundMail.id).limit(batch)).scalars())
            if not mails:
                return done
            for mail in mails:
                flag_modified(mail, "raw")  # written back: encrypted with the first key
            last_id = mails[-1].id
            done += len(mails)
        if progress is not None:
            progress(done)
