"""Our own Message-IDs, signed, so that mail coming back can be tied to what we sent.

Every message we send gets ``<cc.RANDOM.SIGNATURE@our-domain>``, the signature an HMAC of the
random part and the domain under ``[service] message_id_secret``.  When a bounce, an
out-of-office or another robot's answer comes back, the ids it quotes (In-Reply-To,
References, the returned original's headers) are checked: a valid signature proves the mail
refers to a message of ours, so a forged bounce naming a guessed or made-up id cannot mark a
requester's address undeliverable.  Another CaseConsultant (another domain or secret) signs
its own ids; they do not verify here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from consultant.settings import Settings

PREFIX = "cc"
_SIGNED = re.compile(r"^<cc\.([0-9a-f]{20})\.([0-9a-f]{16})@([^<>@\s]+)>$")
_ANY_ID = re.compile(r"<cc\.[0-9a-f]{20}\.[0-9a-f]{16}@[^<>@\s]+>")


class MessageIdSigner:
    """Makes and checks signed Message-IDs for one service domain."""

    def __init__(self, secret: str, domain: str) -> None:
        # Without a configured secret the ids are still signed, with a key derived from the
        # domain: enough to recognise our own format, not to resist a forger who reads the
        # source.  Production sets CASECONSULTANT_SERVICE__MESSAGE_ID_SECRET (README).
        self._key = (secret or f"caseconsultant-unkeyed:{domain}").encode("utf-8")
        self.domain = domain.lower()

    def _signature(self, token: str, domain: str) -> str:
        return hmac.new(self._key, f"{token}@{domain}".encode(), hashlib.sha256).hexdigest()[:16]

    def new(self) -> str:
        token = secrets.token_hex(10)
        return f"<{PREFIX}.{token}.{self._signature(token, self.domain)}@{self.domain}>"

    def verify(self, message_id: str) -> bool:
        match = _SIGNED.match(message_id.strip())
        if match is None or match.group(3).lower() != self.domain:
            return False
        token, signature, domain = match.groups()
        return hmac.compare_digest(signature, self._signature(token, domain.lower()))

    def ours(self, candidates: list[str]) -> list[str]:
        """The candidates that are valid ids of ours, in order, without repeats."""
        seen: list[str] = []
        for candidate in candidates:
            if candidate not in seen and self.verify(candidate):
                seen.append(candidate)
        return seen


def signer_for(settings: Settings) -> MessageIdSigner:
    return MessageIdSigner(settings.service.message_id_secret.get_secret_value(), settings.domain)


def signed_ids_in_text(text: str, limit: int = 50) -> list[str]:
    """Every id in our format found in free text (a bounce quoting our headers), bounded."""
    return _ANY_ID.findall(text)[:limit]
