"""Human-readable text for ``codes show`` (the JSON form is the ``lookup`` dict itself)."""

from __future__ import annotations

from typing import Any


def _ptp_lines(block: dict[str, Any]) -> list[str]:
    lines = []
    for side, label in (("as_column_1", "as column 1"), ("as_column_2", "as column 2")):
        info = block[side]
        ioce = next((e["ioce"]["source"] for e in info["edits"] if e.get("ioce")), None)
        lines.append(f"  PTP {label}: {info['in_force']} edits in force ({block['source']})"
                     + (f", first {info['shown']} shown" if info["shown"] < info["in_force"] else "")
                     + (f"; I/OCE versions from [{ioce}]" if ioce else ""))
        for e in info["edits"]:
            lines.append(f"    {e['column_1']} / {e['column_2']}  modifier indicator {e['modifier_indicator']}"
                         f"  {e['rationale'] or ''}" + _ioce_text(e))
    return lines


def _ioce_text(edit: dict[str, Any]) -> str:
    io = edit.get("ioce")
    if not io:
        return ""
    # The table's first version also stands for "already in force when the table begins".
    return (f"  in force since I/OCE {io['version']} ({io['version_started']})"
            + (" or earlier" if io["earliest_in_table"] else ""))


def _corrected_lines(f: dict[str, Any]) -> list[str]:
    lines = []
    for key, label in (("description", "descriptor"), ("short_description", "short descriptor")):
        if f.get(f"{key}_corrected_by"):
            shown = "" if key == "description" else f" {f[key]!r};"
            lines.append(f"  ({label} as corrected by [{f[f'{key}_corrected_by']}];{shown} as published "
                         f"in [{f['source']}]: {f[f'{key}_as_published']!r})")
    return lines


def _companion_lines(f: dict[str, Any]) -> list[str]:
    """HCPCS processing note, NOC status, corrections and annual-update action (``extras``)."""
    out = []
    note = f.get("processing_note")
    if note:
        out.append(f"  processing note {note['number']}: {note['text'] or '(not in that release)'} [{note['source']}]")
    if f.get("noc"):
        out.append(f"  NOC: {f['noc']['claim_requirement']} [{f['noc']['source']}]")
    for c in f.get("corrections", []):
        changed = [f"{k.replace('_', ' ')}: {c[k]!r}" for k in ("short_description", "long_description") if c[k]]
        changed += [f"{k}: {v}" for k, v in c["fields"].items()]
        out.append(f"  CMS correction: {c['action']}" + (f" ({'; '.join(changed)})" if changed else "")
                   + (f", effective {c['effective_date']}" if c["effective_date"] else "")
                   + ("" if c["applies_to_hcpcs_release"] else " (to another HCPCS release than the one shown)")
                   + f" [{c['source']}]")
    update = f.get("annual_update")
    if update:
        meaning = f" = {update['meaning']}" if update["meaning"] and update["meaning"] != update["action"] else ""
        out.append(f"  annual update {update['effective_date'] or ''}: {update['action']}"
                   + (f" (action code {update['action_code']}{meaning})" if update["action_code"] else "")
                   + f" [{update['source']}]")
    return out


def render_facts(f: dict[str, Any]) -> str:
    """Plain text with each fact's source release in brackets."""
    out = [f"{f['code']}  {f['system']}  [{f.get('source') or 'no release'}]"]
    out.append(f"  {f.get('description') or f.get('note') or '(no descriptor)'}")
    out += _corrected_lines(f)
    if f.get("copyright"):
        out.append(f"  {f['copyright']}")
    if f["system"] == "ICD-10-CM":
        state = "billable" if f["billable"] else ("needs a 7th character" if f["needs_7th_character"] else "header (not billable)")
        out.append(f"  {state}")
        for level in ("section", "chapter"):
            if f.get(level):
                out.append(f"  {level} {f[level]['name']}: {f[level]['description']}")
        for note in f["notes"]:
            out.append(f"  {note['label']} (at {note['from']}):")
            out += [f"    - {n}" for n in note["notes"]]
        if f.get("seven_chr_def"):
            out.append("  7th characters: " + "; ".join(f"{k} = {v}" for k, v in f["seven_chr_def"].items()))
        for child in f.get("children", []):
            out.append(f"    child {child['code']} {child['description']}" + ("" if child["billable"] else " (not billable)"))
        return "\n".join(out)
    if f.get("coverage"):
        cov = f["coverage"]
        out.append(f"  coverage {cov['code']}: {cov['meaning']}; pricing "
                   + ", ".join(f"{p['code']} {p['meaning']}" for p in f.get("pricing", [])))
        meaning = (f.get("action_meaning") or {}).get("meaning")
        out.append(f"  added {f['add_date']}, last action {f['action_code']}"
                   + (f" ({meaning} [{f['action_meaning']['source']}])" if meaning else "")
                   + f" {f['action_effective_date']}"
                   + (f", TERMINATED {f['term_date']}" if f["terminated"] else ""))
    if f.get("billing_unit"):
        bu = f["billing_unit"]
        out.append(f"  billing unit: {'per administration (' + bu['text'] + ')' if bu.get('per_item') else ('up to ' if bu.get('up_to') else '') + str(bu['amount']) + ' ' + str(bu['unit'])}")
    out += _companion_lines(f)
    for m in f.get("mue", []):
        out.append(f"  MUE {m['value']} (MAI {m['mai']}: {m['mai_meaning']}) {m['rationale'] or ''} [{m['source']}]")
    addon = f.get("addon")
    if addon and addon["is_addon"]:
        out.append(f"  add-on code; primaries: {', '.join(addon['primaries']) or 'contractor defined'} [{addon['source']}]")
    if addon and addon["primary_of_addons"]:
        out.append(f"  primary code for {addon['primary_of_addons']} add-on edits [{addon['source']}]")
    for block in f.get("ptp", []):
        out += _ptp_lines(block)
    return "\n".join(out)
