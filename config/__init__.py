"""Bundled configuration (default.toml, production.example.toml).

Installed as the package ``consultant.config`` (see pyproject.toml) so a wheel carries them;
``consultant.settings.DEFAULT_CONFIG`` is the bundled default.
"""
