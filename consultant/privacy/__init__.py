"""Patient identifiers: finding them, replacing them with placeholders, checking what leaves.

Coding questions never need to know who the patient is, yet requesters paste identifiers by
habit.  This package owns every decision about them, in one direction:

* ``detect``: named rules (``rules_ids``, ``rules_names``), each hit with its rule, kind and span;
* ``redact``: text, subject, display names, attachment names and HTML with placeholders
  (``[NAME]``, ``[MBI]``, ``[DOB]`` …) — done before anything is stored for humans;
* ``outgoing``: the final composed answer checked right before it goes to the outbox;
* ``crypto`` and ``retention``: the raw mail encrypted at rest and purged after a while.
"""
