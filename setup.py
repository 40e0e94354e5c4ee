"""The package list and the package data live here; everything else is in pyproject.toml.

pyproject's ``packages.find`` cannot add packages mapped from other directories, and
``templates/`` and ``config/`` are installed as ``consultant.templates`` / ``consultant.config``
(see ``[tool.setuptools.package-dir]``).  Finding the rest keeps a new subpackage from being
left out of the wheel silently.
"""

from pathlib import Path

from setuptools import find_packages, setup

# Alembic's environment and revisions and the demo's data excerpt are directories of files, not
# packages with an __init__.py; listing them ships their files (package_data below).
DATA_PACKAGES = ["consultant.migrations", "consultant.migrations.versions", "consultant.demo_data"]
TEMPLATE_DIRS = sorted(f"consultant.templates.{d.name}" for d in Path("templates").iterdir()
                       if d.is_dir() and not d.name.startswith(("_", ".")))

setup(packages=find_packages(include=["consultant*", "workers*"])
      + ["consultant.templates", *TEMPLATE_DIRS, "consultant.config", *DATA_PACKAGES],
      package_data={
          **{pkg: ["*.html", "*.j2", "*.txt", "static/*.js"] for pkg in TEMPLATE_DIRS},
          "consultant.config": ["*.toml"],
          "consultant.migrations": ["*.mako"],
          "consultant.demo_data": ["*.gz", "*.xlsx", "*.json"],
      })
