"""Settings: the TOML file, CASECONSULTANT_* overrides, errors that name the key, secrets hidden."""

from __future__ import annotations

import subprocess
import sys

import pytest

from consultant.settings import DEFAULT_CONFIG, ConfigError, load_settings


def write(tmp_path, text: str):  # type: ignore[no-untyped-def]
    config = tmp_path / "cc.toml"
    config.write_text(text, encoding="utf-8")
    return config


def test_a_value_of_the_wrong_type_names_the_key_and_where_it_came_from(tmp_path):
    config = write(tmp_path, '[imap]\nhost = "imap.example.com"\nport = "nine-nine-three"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    message = str(info.value)
    assert message.startswith("imap.port: Input should be a valid integer")
    assert "'nine-nine-three'" in message and str(config) in message

    with pytest.raises(ConfigError, match=r"smtp_in\.port: Input should be a valid integer.*"
                                          r"\[from CASECONSULTANT_SMTP_IN__PORT\]"):
        load_settings(DEFAULT_CONFIG, environ={"CASECONSULTANT_SMTP_IN__PORT": "x"})
    with pytest.raises(ConfigError, match=r"authenticity\.policy: Input should be 'off', 'warn' or 'hold'"):
        load_settings(write(tmp_path, '[authenticity]\npolicy = "strict"\n'), environ={})


def test_the_environment_overrides_the_file_key_by_key(tmp_path):
    config = write(tmp_path, '[smtp_in]\nhost = "0.0.0.0"\nport = 25\n[service]\naliases = ["a@x.test"]\n')
    env = {"CASECONSULTANT_SMTP_IN__PORT": "2526", "caseconsultant_console__secure_cookies": "yes",
           "CASECONSULTANT_SERVICE__ALIASES": "b@x.test, c@x.test",
           "CASECONSULTANT_PRIVACY__RAW_MAIL_KEYS": "new-key,old-key"}
    settings = load_settings(config, environ=env)
    assert (settings.smtp_in.host, settings.smtp_in.port) == ("0.0.0.0", 2526)  # host from the file
    assert settings.console.secure_cookies is True
    assert settings.service.aliases == ["b@x.test", "c@x.test"]  # comma-separated, not JSON
    assert [k.get_secret_value() for k in settings.privacy.raw_mail_keys] == ["new-key", "old-key"]
    assert settings.source == str(config)
    # Without an override the file's value stands; the process environment is not read.
    assert load_settings(config, environ={}).smtp_in.port == 25
    # $CASECONSULTANT_CONFIG chooses the file when --config does not.
    assert load_settings(environ={"CASECONSULTANT_CONFIG": str(config)}).smtp_in.host == "0.0.0.0"


def test_secrets_are_not_in_the_repr_nor_in_errors(tmp_path):
    env = {"CASECONSULTANT_IMAP__PASSWORD": "hunter2-imap", "CASECONSULTANT_SMTP_OUT__PASSWORD": "hunter2-smtp",
           "CASECONSULTANT_CONSOLE__SECRET_KEY": "hunter2-console",
           "CASECONSULTANT_SERVICE__MESSAGE_ID_SECRET": "hunter2-msgid",
           "CASECONSULTANT_IMAP__OAUTH2_CLIENT_SECRET": "hunter2-oauth"}
    settings = load_settings(DEFAULT_CONFIG, environ=env)
    shown = repr(settings) + str(settings) + repr(settings.imap) + str(settings.model_dump())
    assert "hunter2" not in shown and "**********" in shown
    assert settings.imap.password.get_secret_value() == "hunter2-imap"
    assert settings.console.secret_key.get_secret_value() == "hunter2-console"
    # A secret key given a table (wrong type) is named, its value not echoed.
    config = write(tmp_path, '[smtp_out]\npassword = ["hunter2-list"]\nport = "hunter2-port"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert "smtp_out.password: Input should be a valid string" in str(info.value)
    assert "'hunter2-port'" in str(info.value)  # not a secret: shown to help
    assert "hunter2-list" not in str(info.value)


def test_unknown_keys_and_sections_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"imap\.prot: unknown key \(known: .*port.*\)"):
        load_settings(write(tmp_path, '[imap]\nprot = 993\n'), environ={})
    with pytest.raises(ConfigError, match=r"smtp: unknown key \(known: authenticity, broker, .*smtp_in"):
        load_settings(write(tmp_path, '[smtp]\nport = 25\n'), environ={})
    with pytest.raises(ConfigError, match=r"console\.secretkey: unknown key .*CASECONSULTANT_CONSOLE__SECRETKEY"):
        load_settings(DEFAULT_CONFIG, environ={"CASECONSULTANT_CONSOLE__SECRETKEY": "x"})
    with pytest.raises(ConfigError, match="CASECONSULTANT_CONSOL__PORT: unknown section 'consol'"):
        load_settings(DEFAULT_CONFIG, environ={"CASECONSULTANT_CONSOL__PORT": "1"})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(write(tmp_path, "[imap\n"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_the_cli_reports_a_bad_setting_in_one_line(tmp_path):
    config = write(tmp_path, '[workers]\npool = "gevent"\n')
    result = subprocess.run([sys.executable, "-m", "consultant.cli", "--config", str(config), "cases", "list"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        "caseconsultant: error: workers.pool: Input should be 'prefork' or 'threads'")
    assert "Traceback" not in result.stderr
