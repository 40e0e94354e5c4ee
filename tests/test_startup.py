"""Nothing is configured at import: Celery and the settings are set up by a command at start-up."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.servers import REPO

IMPORT_EVERYTHING = """
import importlib, pkgutil
import consultant, workers
import workers.app as celery_app
for module in pkgutil.walk_packages(consultant.__path__, "consultant."):
    if ".migrations" not in module.name:
        importlib.import_module(module.name)
importlib.import_module("workers.tasks")
assert not celery_app.app.configured, "the Celery app was configured at import"
assert celery_app._runtime is None, "a runtime was built at import"
print("nothing configured")
"""


def test_importing_every_module_configures_nothing(tmp_path):
    # A config file that cannot be read: any import-time load_settings() would fail loudly.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASECONSULTANT_")}
    env["CASECONSULTANT_CONFIG"] = str(tmp_path / "missing.toml")
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "nothing configured"
    assert not (tmp_path / "var").exists()  # no database, broker or key file made either


def test_a_celery_command_is_configured_from_its_config_option(tmp_path):
    config = tmp_path / "cc.toml"
    config.write_text(f'[broker]\nurl = "sqla+sqlite:///{tmp_path / "b.sqlite"}"\n'
                      f'[database]\nurl = "sqlite:///{tmp_path / "cc.sqlite"}"\n'
                      f'[privacy]\nkey_file = "{tmp_path / "k"}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASECONSULTANT_")}
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "workers.app", "report",
                           "--config", str(config)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"sqla+sqlite:///{tmp_path / 'b.sqlite'}" in done.stdout
