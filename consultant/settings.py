"""Configuration: a TOML file, then ``CASECONSULTANT_<SECTION>__<KEY>`` environment overrides.

The file is chosen by ``--config FILE`` or ``$CASECONSULTANT_CONFIG``; without either, the
bundled ``config/default.toml`` applies.  Secrets (IMAP/SMTP passwords, the console's session
key) belong in the environment or in an operator's file outside the repository, never in the
repository itself; ``default.toml`` therefore carries none.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

# templates/ and config/ are installed as the packages consultant.templates and consultant.config
# (pyproject.toml), so these are real directories in a checkout, an editable install and a wheel.
TEMPLATE_ROOT = Path(str(files("consultant.templates")))
CONFIG_ROOT = Path(str(files("consultant.config")))
DEFAULT_CONFIG = CONFIG_ROOT / "default.toml"
ENV_PREFIX = "CASECONSULTANT_"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


@dataclass
class DatabaseSettings:
    url: str = "sqlite:///var/caseconsultant.sqlite"


@dataclass
class BrokerSettings:
    url: str = "sqla+sqlite:///var/broker.sqlite"
    result_backend: str = ""
    # Redis: seconds before a task taken by a worker that died is handed to another worker.
    visibility_timeout: int = 3600


@dataclass
class ServiceSettings:
    address: str = "consult@localhost"
    name: str = "CaseConsultant"
    # Extra local addresses we accept mail for (SMTP intake answers 550 for anything else).
    aliases: list[str] = field(default_factory=list)
    # Mails larger than this are quarantined without a full parse (bytes).
    max_message_bytes: int = 10_000_000
    # Where operator-supplied templates are searched before the bundled ones.
    template_dir: str = ""
    # Auto-replies (over-quota notices) are rate limited per requester to one per this many hours.
    notice_interval_hours: int = 24
    # At most this many automatic mails (notices, not consultant-approved answers) to one
    # address in 24 hours, whatever triggers them: the backstop against mail loops.
    auto_mail_per_address_per_day: int = 3
    # Key that signs our Message-IDs, so bounces and replies to them are recognised (a secret:
    # set it through CASECONSULTANT_SERVICE__MESSAGE_ID_SECRET, never in a committed file).
    message_id_secret: str = ""
    consultant_name: str = ""
    consultant_credential: str = ""


@dataclass
class ImapSettings:
    host: str = ""
    port: int = 993
    ssl: bool = True
    username: str = ""
    password: str = ""
    folder: str = "INBOX"
    processed_folder: str = ""
    sent_folder: str = ""
    idle: bool = True
    poll_interval: int = 60
    idle_timeout: int = 300
    max_backoff: int = 300
    # "password" (LOGIN) or "xoauth2" (Gmail, Microsoft 365): an access token got from
    # oauth2_token_url with the refresh token, refreshed before it expires.
    auth: str = "password"
    oauth2_token_url: str = ""
    oauth2_client_id: str = ""
    oauth2_client_secret: str = ""
    oauth2_refresh_token: str = ""
    # A label for this mailbox in state, logs and alerts (default: username@host).
    name: str = ""
    # Health fails (and the stale metric is 1) for a mailbox with no successful fetch for this long.
    alert_after_minutes: int = 30
    # Further mailboxes: [[imap.mailboxes]] tables with any of the keys above (unset keys come
    # from [imap]); a key ending in _env names the environment variable holding its value,
    # e.g. password_env = "BILLING_IMAP_PASSWORD", so secrets stay out of the file.
    mailboxes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return bool(self.host) or bool(self.mailboxes)

    @property
    def label(self) -> str:
        return self.name or f"{self.username}@{self.host}"

    def all_mailboxes(self, environ: dict[str, str] | None = None) -> list[ImapSettings]:
        """Every mailbox to poll: [imap] itself when it has a host, then each [[imap.mailboxes]]."""
        env = os.environ if environ is None else environ
        result = [replace(self, mailboxes=[])] if self.host else []
        for index, table in enumerate(self.mailboxes):
            where = f"[[imap.mailboxes]] #{index + 1}"
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: expected a table of mailbox settings")
            values: dict[str, Any] = {}
            for key, value in table.items():
                if key.endswith("_env"):
                    key = key[:-4]
                    if str(value) not in env:
                        raise ConfigError(f"{where} {key}_env: environment variable {value} is not set")
                    value = env[str(value)]
                values[key] = value
            mailbox = replace(self, mailboxes=[])
            for key in ("name", "password", "oauth2_refresh_token", "oauth2_client_secret"):
                setattr(mailbox, key, "")  # never inherited: they belong to one account
            _apply(mailbox, values, where)
            if not mailbox.host or not mailbox.username:
                raise ConfigError(f"{where}: host and username are required")
            result.append(mailbox)
        labels = [m.label + "/" + m.folder for m in result]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ConfigError(f"[imap] the same mailbox folder is configured twice: {', '.join(duplicates)}")
        for mailbox in result:
            if mailbox.auth not in ("password", "xoauth2"):
                raise ConfigError(f"[imap] {mailbox.label}: auth must be password or xoauth2, "
                                  f"not {mailbox.auth!r}")
            if mailbox.auth == "xoauth2" and not (mailbox.oauth2_token_url and mailbox.oauth2_refresh_token):
                raise ConfigError(f"[imap] {mailbox.label}: xoauth2 needs oauth2_token_url and "
                                  "oauth2_refresh_token")
        return result


@dataclass
class SmtpInSettings:
    host: str = "127.0.0.1"
    port: int = 2525
    # Simultaneous SMTP sessions; one more is answered 421 (try later).
    max_sessions: int = 20


@dataclass
class SmtpOutSettings:
    host: str = ""
    port: int = 25
    ssl: bool = False
    starttls: bool = False
    username: str = ""
    password: str = ""
    # When set, outbound mail is written to this Maildir instead of SMTP (the demo uses it).
    maildir: str = ""
    timeout: int = 30
    max_attempts: int = 8


PLAN_KINDS = ("lifetime", "monthly", "topup")


@dataclass(frozen=True)
class PlanSettings:
    """One plan of ``[quota.plans]``, checked (see :func:`QuotaSettings.plan`).

    lifetime: ``answers`` once, on top of the guest answer (``guest`` and ``registered`` are
    lifetime plans).  monthly: ``answers`` at every reset (``reset_day`` of the month, midnight
    in ``[quota] timezone``); unused ones expire then unless ``carry_over``.  topup: a pack of
    ``answers`` granted by an operator, never expiring; nobody is "on" a top-up plan.
    """

    name: str
    kind: str
    answers: int
    reset_day: int = 1
    carry_over: bool = False


@dataclass
class QuotaSettings:
    guest: int = 1
    registered: int = 5
    # Further plans: `pro = 100` (lifetime: 100 answers on top of the guest answer), or a table
    # `pro = {kind = "monthly", answers = 20, reset_day = 1, carry_over = false}`,
    # `pack10 = {kind = "topup", answers = 10}`.
    plans: dict[str, Any] = field(default_factory=dict)
    # Monthly allowances reset at midnight in this IANA time zone.
    timezone: str = "UTC"
    # Where the over-quota notice sends people who want more answers (either or both).
    upgrade_address: str = ""
    upgrade_url: str = ""

    def plan(self, name: str) -> PlanSettings:
        """The named plan; ConfigError for a malformed table, KeyError for an unknown name."""
        if name == "guest":
            return PlanSettings("guest", "lifetime", self.guest)
        if name == "registered":
            return PlanSettings("registered", "lifetime", self.guest + self.registered)
        value = self.plans[name]
        where = f"[quota.plans] {name}"
        if isinstance(value, int) and not isinstance(value, bool):
            return PlanSettings(name, "lifetime", self.guest + value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a number of answers or a table with kind and answers")
        unknown = set(value) - {"kind", "answers", "reset_day", "carry_over"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                              "(known: kind, answers, reset_day, carry_over)")
        kind = value.get("kind", "lifetime")
        if kind not in PLAN_KINDS:
            raise ConfigError(f"{where}: kind must be one of {', '.join(PLAN_KINDS)}, got {kind!r}")
        answers = _coerce(value.get("answers"), 0, f"{where} answers")
        reset_day = _coerce(value.get("reset_day", 1), 0, f"{where} reset_day")
        carry_over = _coerce(value.get("carry_over", False), False, f"{where} carry_over")
        if answers < 0:
            raise ConfigError(f"{where}: answers must not be negative")
        if not 1 <= reset_day <= 31:
            raise ConfigError(f"{where}: reset_day must be 1-31 (a short month resets on its "
                              "last day)")
        if kind != "monthly" and ("reset_day" in value or "carry_over" in value):
            raise ConfigError(f"{where}: reset_day and carry_over apply to monthly plans only")
        # A lifetime plan's answers come on top of the guest answer, as `pro = 100` does.
        total = self.guest + answers if kind == "lifetime" else answers
        return PlanSettings(name, kind, total, reset_day, carry_over)

    def check(self) -> None:
        """Fail at start-up, naming the key, rather than at the first charge."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        for name in self.plans:
            if name in ("guest", "registered"):
                raise ConfigError(f"[quota.plans] {name}: a built-in plan; set [quota] {name}")
            self.plan(name)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"[quota] timezone: unknown time zone {self.timezone!r}") from None


AUTHENTICITY_POLICIES = ("off", "warn", "hold")


@dataclass
class AuthenticitySettings:
    # off: no check.  warn: record the result on the case, answer as usual.  hold: a mail whose
    # sender is not verified is held as `unverified` until the address confirms by reply.
    policy: str = "off"
    # The authserv-id our own receiving MTA writes in Authentication-Results (RFC 8601);
    # headers with any other id were written by someone else and are ignored.
    authserv_id: str = ""
    # Mail taken in by our SMTP listener has no upstream MTA: verify its DKIM signature here.
    verify_dkim: bool = False
    # DNS servers ("host" or "host:port") for DKIM key lookups; empty: the system resolver.
    dns_servers: list[str] = field(default_factory=list)
    dns_timeout: float = 5.0

    def check(self) -> None:
        if self.policy not in AUTHENTICITY_POLICIES:
            raise ConfigError(f"[authenticity] policy: one of {', '.join(AUTHENTICITY_POLICIES)}, "
                              f"got {self.policy!r}")
        if self.policy != "off" and not self.authserv_id and not self.verify_dkim:
            raise ConfigError("[authenticity] policy is on but neither authserv_id nor "
                              "verify_dkim is set: nothing could ever verify a sender")


@dataclass
class ConsoleSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: str = ""
    secure_cookies: bool = False
    # Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are believed (passed to
    # uvicorn's forwarded_allow_ips).  Empty: believe nobody, so a client cannot pick its own
    # "address" per login attempt and walk around the per-address lockout.
    trusted_proxies: list[str] = field(default_factory=list)
    # Only the consultant a case is assigned to may approve it (unassigned cases: anyone).
    only_assignee_approves: bool = False


@dataclass
class SlaSettings:
    """Turnaround targets: hours from a case's arrival to its answer, per plan (the plan names
    of ``[quota]``: guest, registered and those of ``[quota.plans]``); others get default_hours."""

    default_hours: float = 4.0
    plans: dict[str, Any] = field(default_factory=dict)
    # A case is "due soon" in the last this fraction of its target (0.25: the last hour of 4).
    due_soon_fraction: float = 0.25

    def hours_for(self, plan: str) -> float:
        return float(self.plans.get(plan, self.default_hours))

    def check(self, quota: QuotaSettings) -> None:
        """A target for a plan that does not exist is a typo that would silently never apply."""
        known = {"guest", "registered", *quota.plans}
        for name, hours in self.plans.items():
            if name not in known:
                raise ConfigError(f"[sla] plans: unknown plan {name!r} (known: "
                                  f"{', '.join(sorted(known))})")
            if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
                raise ConfigError(f"[sla] plans {name}: expected a number of hours > 0, got {hours!r}")
        if self.default_hours <= 0:
            raise ConfigError("[sla] default_hours: must be > 0")
        if not 0 <= self.due_soon_fraction < 1:
            raise ConfigError("[sla] due_soon_fraction: must be at least 0 and below 1")


@dataclass
class PrivacySettings:
    # Fernet keys for the raw mail at rest, newest first (the first encrypts, all decrypt).
    # Set them in the environment: CASECONSULTANT_PRIVACY__RAW_MAIL_KEYS="new,old".
    raw_mail_keys: list[str] = field(default_factory=list)
    # Used when raw_mail_keys is empty: created with one fresh key (mode 0600) on first use.
    key_file: str = "var/raw-mail.keys"
    # Raw mail (and its attachments) is purged this many days after it was received.
    retention_days: int = 30
    # Audit entries are kept this long (6 years), then pruned with an anchor that keeps the
    # chain verifiable.
    audit_retention_days: int = 2192


@dataclass
class WorkersSettings:
    # Pool size of each queue's workers (`caseconsultant worker --queue NAME`, and the thread
    # pools of `run` and `demo`).  One queue per kind of work: sending never waits for drafting.
    intake_concurrency: int = 2
    drafting_concurrency: int = 2
    sending_concurrency: int = 2
    # Pool of `caseconsultant worker --queue NAME`: prefork (processes) or threads.
    pool: str = "prefork"

    def concurrency(self, queue: str) -> int:
        value = getattr(self, f"{queue}_concurrency", None)
        if value is None:
            raise ConfigError(f"[workers] has no {queue}_concurrency: {queue!r} is not a queue")
        return int(value)


@dataclass
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    smtp_in: SmtpInSettings = field(default_factory=SmtpInSettings)
    smtp_out: SmtpOutSettings = field(default_factory=SmtpOutSettings)
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    authenticity: AuthenticitySettings = field(default_factory=AuthenticitySettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    sla: SlaSettings = field(default_factory=SlaSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    workers: WorkersSettings = field(default_factory=WorkersSettings)
    codes: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def domain(self) -> str:
        return self.service.address.rpartition("@")[2] or "localhost"


def _coerce(value: Any, current: Any, where: str) -> Any:
    """Convert an env string (or TOML value) to the type of the default it replaces."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if isinstance(current, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(current, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return list(value)
    if isinstance(current, dict):
        if isinstance(value, str):
            raise ConfigError(f"{where}: set tables in the TOML file, not the environment")
        return dict(value)
    return str(value)


def _apply(section_obj: Any, values: dict[str, Any], section: str) -> None:
    known = {f.name for f in fields(section_obj)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"[{section}] {key}: unknown key (known: {', '.join(sorted(known))})")
        setattr(section_obj, key, _coerce(value, getattr(section_obj, key), f"[{section}] {key}"))


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (or ``$CASECONSULTANT_CONFIG``, or the bundled default)."""
    env = os.environ if environ is None else environ
    chosen = Path(path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {chosen}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: invalid TOML: {exc}") from None
    settings = Settings(source=str(chosen))
    for section, values in data.items():
        if section == "codes":
            settings.codes = dict(values)
            continue
        target = getattr(settings, section, None)
        if target is None or not hasattr(target, "__dataclass_fields__") or not isinstance(values, dict):
            raise ConfigError(f"{chosen}: unknown section [{section}]")
        _apply(target, values, section)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        target = getattr(settings, section, None)
        if section == "codes":
            settings.codes[key] = value
        elif target is not None and hasattr(target, "__dataclass_fields__"):
            _apply(target, {key: value}, section)
        else:
            raise ConfigError(f"{name}: unknown section {section!r}")
    _resolve_relative_sqlite(settings, chosen)
    settings.quota.check()
    settings.sla.check(settings.quota)
    settings.authenticity.check()
    settings.imap.all_mailboxes(dict(env))  # a mistake in [[imap.mailboxes]] fails at start-up
    return settings


def _resolve_relative_sqlite(settings: Settings, config_path: Path) -> None:
    """Relative SQLite paths are relative to the working directory; make sure the folder exists."""
    for url in (settings.database.url, settings.broker.url):
        for prefix in ("sqlite:///", "sqla+sqlite:///"):
            if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
                Path(url[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
