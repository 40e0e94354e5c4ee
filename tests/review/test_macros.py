"""Macros: per-team snippets with variables, rendered in a sandbox, managed in the console."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from consultant.models import AuditEvent
from consultant.review import auth, macros
from consultant.review.models import Macro
from tests.review.conftest import ADMIN, PASSWORD, csrf_of

TEXT = "Thank you, {{ requester_name }}. For {{ case_ref }} ({{ codes }}): see below."


def save(client, **data):  # type: ignore[no-untyped-def]
    page = client.get("/macros").text
    return client.post(data.pop("path", "/macros"), data={"csrf_token": csrf_of(page), **data})


def test_a_macro_is_filled_in_for_the_case_and_offered_in_the_editor(console):
    case_id = console.case(sender="pat@ortho.test", subject="Modifier 25?",
                           body="Is modifier 25 needed on 99214 with 20610, DOS 2026-05-01?")
    client = console.logged_in()
    saved = save(client, name="Thanks  +  codes", text=TEXT)
    assert "Macro “Thanks + codes” saved for team (default)." in saved.text
    page = client.get(f"/cases/{case_id}").text
    [(macro_id, filled)] = re.findall(r'<template id="macro-(\d+)">(.*?)</template>', page, re.S)
    assert html.unescape(filled) == f"Thank you, pat@ortho.test. For CC-{case_id} (99214, 20610, 25): see below."
    assert f'<option value="{macro_id}">Thanks + codes</option>' in page
    with console.factory() as session:
        [event] = session.execute(select(AuditEvent).where(AuditEvent.action == "macro_created")).scalars()
        assert event.detail == {"macro_id": int(macro_id), "name": "Thanks + codes", "team": ""}


@pytest.mark.parametrize("text, why", [
    ("Dear {{ requester_nmae }}", "'requester_nmae' is undefined"),
    ("{{ case_ref ", "cannot be rendered"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "cannot be rendered"),
    ("{{ case_ref.__class__.__init__.__globals__ }}", "cannot be rendered"),
    ("{% for x in range(10**9) %}{% endfor %}", "cannot be rendered"),
    ("{{ 'x' * 10**9 }}", "longer than 10000 characters"),
    ("{{ 2 ** 100000 }}", "exponent too large"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ("   ", "empty"),
])
def test_macros_that_could_not_be_used_are_refused_when_saved(console, text, why):
    client = console.logged_in()
    response = save(client, name="bad", text=text)
    assert why in html.unescape(response.text)
    with console.factory() as session:
        assert session.execute(select(Macro)).first() is None


def test_the_sandbox_refuses_unsafe_calls_and_markup_stays_text(console):
    with pytest.raises(macros.MacroError):
        macros.render("{{ codes.format.__globals__ }}", macros.SAMPLE)
    case_id = console.case()
    client = console.logged_in()
    save(client, name="markup", text="<script>alert(1)</script> {{ case_ref }}")
    page = client.get(f"/cases/{case_id}").text
    assert "<script>alert(1)</script>" not in page
    assert f"&lt;script&gt;alert(1)&lt;/script&gt; CC-{case_id}" in page


def test_macros_are_kept_per_team(console):
    auth.add_user(console.factory, "olga@cc.test", PASSWORD, name="Olga Ortho", team="ortho")
    jane = console.logged_in()
    save(jane, name="Default team snippet", text="Hello {{ requester_name }}")
    olga = console.logged_in("olga@cc.test")
    save(olga, name="Ortho snippet", text="Ortho: {{ case_ref }}")
    with console.factory() as session:
        ids = {m.name: m.id for m in session.execute(select(Macro)).scalars()}
        assert {m.name: m.team for m in session.execute(select(Macro)).scalars()} == {
            "Default team snippet": "", "Ortho snippet": "ortho"}
    case_id = console.case()
    assert "Ortho snippet" in olga.get(f"/cases/{case_id}").text
    assert "Default team snippet" not in olga.get(f"/cases/{case_id}").text
    assert "Ortho snippet" not in jane.get("/macros").text
    # Olga cannot change or delete the default team's macro; an admin can.
    refused = save(olga, path=f"/macros/{ids['Default team snippet']}", name="x", text="y")
    assert "only members of team (default) or an admin" in refused.text
    admin = console.logged_in(ADMIN)
    assert "Ortho snippet" in admin.get("/macros").text and "Default team snippet" in admin.get("/macros").text
    edited = save(admin, path=f"/macros/{ids['Ortho snippet']}", name="Ortho snippet",
                  text="Ortho, edited: {{ case_ref }}")
    assert "Macro “Ortho snippet” updated." in edited.text
    deleted = save(admin, path=f"/macros/{ids['Default team snippet']}/delete")
    assert "Macro “Default team snippet” deleted." in deleted.text
    with console.factory() as session:
        assert [m.text for m in session.execute(select(Macro)).scalars()] == ["Ortho, edited: {{ case_ref }}"]
        actions = [e.action for e in session.execute(select(AuditEvent).where(
            AuditEvent.action.like("macro_%")).order_by(AuditEvent.id)).scalars()]
        assert actions == ["macro_created", "macro_created", "macro_updated", "macro_deleted"]


def test_a_duplicate_name_in_a_team_and_a_post_without_csrf_are_refused(console):
    client = console.logged_in()
    save(client, name="Same", text="one")
    assert "already has a macro named 'Same'" in html.unescape(save(client, name="Same", text="two").text)
    assert client.post("/macros", data={"name": "n", "text": "t"}).status_code == 403
