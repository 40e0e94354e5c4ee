"""The raw mail at rest: encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``).

The raw message is the one copy that still holds patient identifiers (everything stored for
humans is redacted), so the ``inbound_mail.raw`` column holds only Fernet tokens.  The column
type does it (:class:`EncryptedBytes`), so the one store function and the few readers keep
working with plain bytes; the keys travel with the engine they were configured for
(:func:`attach`), built once at start-up from settings — never a module global, never the repo.

Keys: ``[privacy] raw_mail_keys`` (env ``CASECONSULTANT_PRIVACY__RAW_MAIL_KEYS="new,old"``),
newest first; or, when that is empty, the key file ``[privacy] key_file`` (created with one
fresh key, mode 0600, on first use — the single-machine default).  The first key encrypts,
every key decrypts (MultiFernet), which is what makes rotation possible: put a new key first,
run ``caseconsultant keys rotate`` (every stored mail re-encrypted with it), then drop the old.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Engine, LargeBinary, TypeDecorator

from consultant.settings import PrivacySettings

log = logging.getLogger(__name__)
_ATTR = "caseconsultant_raw_mail_keys"


class RawMailKeyError(Exception):
    """The raw-mail keys are missing, malformed, or none of them opens a stored mail."""


class RawMailKeys:
    """The keys for raw mail: the first encrypts, all decrypt."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise RawMailKeyError("no raw-mail encryption key configured")
        try:
            self.fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise RawMailKeyError("a raw-mail key is not a Fernet key (32 url-safe base64 "
                                  f"bytes; `caseconsultant keys generate` makes one): {exc}") from None
        self.count = len(keys)

    def encrypt(self, raw: bytes) -> bytes:
        return self.fernet.encrypt(raw)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self.fernet.decrypt(token)
        except InvalidToken:
            raise RawMailKeyError("a stored raw mail cannot be decrypted with any configured key "
                            "(was a key removed before `caseconsultant keys rotate` ran?)") from None

    def rotate(self, token: bytes) -> bytes:
        """The same mail encrypted with the first (newest) key."""
        try:
            return self.fernet.rotate(token)
        except InvalidToken:
            raise RawMailKeyError("a stored raw mail cannot be decrypted with any configured key") from None


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load_keys(privacy: PrivacySettings) -> RawMailKeys:
    """The keys from settings (``privacy.raw_mail_keys``), else from (or into) the key file."""
    if privacy.raw_mail_keys:
        keys = (k.get_secret_value().strip() for k in privacy.raw_mail_keys)
        return RawMailKeys(tuple(k.encode("ascii") for k in keys if k))
    path = Path(privacy.key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once must not each write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(generate_key() + "\n")
            log.warning("raw-mail encryption key created in %s: back it up, or set "
                        "CASECONSULTANT_PRIVACY__RAW_MAIL_KEYS in production", path)
    lines = [ln.strip() for ln in path.read_text(encoding="ascii").splitlines()]
    return RawMailKeys(tuple(ln.encode("ascii") for ln in lines if ln and not ln.startswith("#")))


def attach(engine: Engine, keys: RawMailKeys) -> Engine:
    """Give ``engine`` the keys its raw-mail column encrypts and decrypts with."""
    setattr(engine.dialect, _ATTR, keys)
    return engine


def _keys_of(dialect: Any) -> RawMailKeys:
    keys = getattr(dialect, _ATTR, None)
    if keys is None:
        raise RawMailKeyError("raw mail is encrypted at rest, and this engine has no keys: build it "
                        "with consultant.db.make_engine(url, keys=load_keys(settings.privacy))")
    return keys  # type: ignore[no-any-return]


class EncryptedBytes(TypeDecorator[bytes]):
    """Bytes stored as a Fernet token with the engine's keys (None stays None: purged)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return _keys_of(dialect).encrypt(bytes(value))

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return _keys_of(dialect).decrypt(bytes(value))
