"""Signed Message-IDs: ours verify, tampered or foreign ones do not."""

from __future__ import annotations

from consultant.mail.msgid import MessageIdSigner


def test_signed_message_ids_verify_only_for_their_signer():
    ours = MessageIdSigner("secret", "cc.test")
    mid = ours.new()
    assert mid.startswith("<cc.") and mid.endswith("@cc.test>")
    assert ours.verify(mid)
    assert not ours.verify(mid.replace("cc.test", "other.test"))
    assert not MessageIdSigner("other secret", "cc.test").verify(mid)
    token, signature = mid[4:].split("@")[0].split(".")
    forged = f"<cc.{token}.{'0' * len(signature)}@cc.test>"
    assert not ours.verify(forged)
    assert ours.ours([forged, mid, mid, "<x@y>"]) == [mid]
