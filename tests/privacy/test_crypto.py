"""Raw mail at rest: encrypted in the column, readable through the ORM, keys rotatable."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from consultant.db import make_engine, make_session_factory
from consultant.intake.store import Location, store_raw
from consultant.models import InboundMail
from consultant.privacy.crypto import RawMailKeyError, generate_key, load_keys
from consultant.privacy.keys import rotate
from consultant.settings import Settings
from tests.conftest import question_mail

SECRET = "SSN 123-45-6789"


def _factory(settings: Settings, keys: list[str]):  # type: ignore[no-untyped-def]
    settings.privacy.raw_mail_keys = keys
    return make_session_factory(make_engine(settings.database.url, keys=load_keys(settings.privacy)))


def _column(factory, mail_id: int) -> bytes:  # type: ignore[no-untyped-def]
    with factory() as s:
        return bytes(s.execute(text("SELECT raw FROM inbound_mail WHERE id = :i"), {"i": mail_id}).scalar_one())


def test_the_column_holds_a_token_and_the_orm_gives_the_bytes_back(factory, settings):
    raw = question_mail(body=f"Patient {SECRET}. Can 77301 and 77338 be billed together?")
    stored = store_raw(factory, raw, Location("cli"))
    column = _column(factory, stored.mail_id)
    assert SECRET.encode() not in column and b"77301" not in column
    assert column.startswith(b"gAAAA")  # a Fernet token
    with factory() as s:
        assert s.get(InboundMail, stored.mail_id).raw == raw
    # The same bytes again are still recognised (sha256 of the plain bytes).
    assert not store_raw(factory, raw, Location("cli")).created


def test_key_rotation_re_encrypts_every_mail_with_the_new_key(settings):
    old, new = generate_key(), generate_key()
    before = _factory(settings, [old])
    ids = [store_raw(before, question_mail(body=f"Question {i}: 20610 with 99214?"), Location("cli")).mail_id
           for i in range(3)]
    tokens = [_column(before, i) for i in ids]
    # Step 1: the new key first, the old one still there to read what is stored.
    both = _factory(settings, [new, old])
    assert rotate(both, batch=2) == 3
    assert all(_column(both, i) != t for i, t in zip(ids, tokens, strict=True))
    # Step 2: the old key removed: everything still reads, and the old key alone reads nothing.
    only_new = _factory(settings, [new])
    with only_new() as s:
        assert all(b"99214" in (s.get(InboundMail, i).raw or b"") for i in ids)
    only_old = _factory(settings, [old])
    with only_old() as s, pytest.raises(RawMailKeyError, match="cannot be decrypted"):
        s.get(InboundMail, ids[0])


def test_an_engine_without_keys_refuses_loudly(settings):
    plain = make_session_factory(make_engine(settings.database.url))
    with pytest.raises(Exception, match="no keys"):
        store_raw(plain, question_mail(), Location("cli"))


def test_the_key_file_is_created_once_with_private_permissions(tmp_path):
    from consultant.settings import PrivacySettings

    privacy = PrivacySettings(key_file=str(tmp_path / "k" / "raw-mail.keys"))
    first = load_keys(privacy)
    again = load_keys(privacy)
    token = first.encrypt(b"x")
    assert again.decrypt(token) == b"x"
    assert (tmp_path / "k" / "raw-mail.keys").stat().st_mode & 0o777 == 0o600


def test_a_malformed_key_is_named(settings):
    settings.privacy.raw_mail_keys = ["not-a-key"]
    with pytest.raises(RawMailKeyError, match="not a Fernet key"):
        load_keys(settings.privacy)
