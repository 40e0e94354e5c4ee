"""What drafting contributes when a consultant approves: the signature, the final text, the
audit diff between the machine draft and what was sent."""

from __future__ import annotations

import difflib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultant.drafting.draft import final_text
from consultant.models import Case
from consultant.settings import Settings

MAX_DIFF_CHARS = 20_000

__all__ = ["final_text", "machine_diff", "signature"]


def signature(session: Session, settings: Settings, by: str) -> tuple[str, str]:
    """(name, credential) of the approving consultant: their console account if they have one,
    else the service-wide name and credential from the settings."""
    name, credential = settings.service.consultant_name, settings.service.consultant_credential
    from consultant.review.models import ConsultantUser  # review imports drafting: imported here

    user = session.scalar(select(ConsultantUser).where(ConsultantUser.email == by.strip().lower()))
    if user is not None and user.name:
        return user.name, user.credential or ""
    return name or (by if by not in ("cli", "") else ""), credential


def machine_diff(case: Case, sent: str) -> dict[str, Any]:
    """The unified diff from the newest machine draft to the text sent, for the audit log."""
    machine = [d for d in case.drafts if d.author == "machine"]
    if not machine:
        return {"machine_version": None, "diff": "", "changed": True}
    base = machine[-1]
    diff = "".join(difflib.unified_diff(
        final_text(base.text).splitlines(keepends=True), sent.splitlines(keepends=True),
        fromfile=f"machine draft v{base.version}", tofile="sent", n=2))
    truncated = len(diff) > MAX_DIFF_CHARS
    return {"machine_version": base.version, "diff": diff[:MAX_DIFF_CHARS],
            "truncated": truncated, "changed": bool(diff)}
