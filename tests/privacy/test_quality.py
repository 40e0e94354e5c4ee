"""Precision and recall per identifier kind on the labelled mails (tests/privacy/mails_*.toml).

Run with ``-s`` to see the table; the closing note of issue 11 quotes it.
"""

from __future__ import annotations

from tests.privacy import labelled

# The targets.
RECALL_TARGETS = {"ssn": 0.99, "mbi": 0.99, "phone": 0.99, "dob": 0.99, "mrn": 0.99,
                  "address": 0.99, "name": 0.95}
PRECISION_TARGET = 0.95


def test_the_labelled_set_is_big_enough_and_balanced() -> None:
    phi, clean = labelled.load("mails_phi.toml"), labelled.load("mails_clean.toml")
    assert len(phi) + len(clean) >= 120 and len(phi) >= 60 and len(clean) >= 60
    assert all(m.phi for m in phi) and not any(m.phi for m in clean)
    kinds = {k for m in phi for k, _ in m.phi}
    assert kinds >= {"name", "mbi", "ssn", "mrn", "account", "dob", "date", "age", "phone", "email",
                     "address", "zip", "url", "ip", "device"}


def test_precision_and_recall_per_kind() -> None:
    result = labelled.score(labelled.load("mails_phi.toml") + labelled.load("mails_clean.toml")
                            + labelled.load("mails_holdout.toml"))
    print("\n" + result.table())
    for kind, target in RECALL_TARGETS.items():
        assert result.recall(kind) >= target, (kind, result.missed)
    for kind in result.hits:
        assert result.precision(kind) >= PRECISION_TARGET, (kind, result.false)
    # Codes, modifiers and NDCs are never taken for identifiers.
    assert result.codes_kept == result.codes, result.lost_codes
