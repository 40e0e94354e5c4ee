"""Bundled templates (replies/ for mail, console/ for the web console).

Installed as the package ``consultant.templates`` (see pyproject.toml) so a wheel carries them;
code finds them with ``consultant.settings.TEMPLATE_ROOT``, never by a path relative to source.
"""
