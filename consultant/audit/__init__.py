"""The audit trail: append-only, hash-chained events for every state change of a case.

Callers keep writing ``session.add(AuditEvent(...))``; ``chain`` seals each committed event
into the chain (sequence number, previous hash, own hash) in the committing transaction, and
``verify`` detects any edit, deletion or reordering afterwards.
"""
