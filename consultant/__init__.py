"""CaseConsultant: an email-driven medical-coding consultation service."""

# The one place the version is set: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"
