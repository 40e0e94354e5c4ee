"""Configuration: a TOML file, then ``CASECONSULTANT_<SECTION>__<KEY>`` environment overrides.

The file is chosen by ``--config FILE`` or ``$CASECONSULTANT_CONFIG``; without either, the
bundled ``config/default.toml`` applies.  Secrets (IMAP/SMTP passwords, OAuth2 secrets, the
console's session key, the Message-ID key, the raw-mail keys) belong in the environment or in an
operator's file outside the repository, never in the repository itself; ``default.toml``
therefore carries none.  They are ``SecretStr``: a repr, a log line or a traceback of the
settings shows ``**********``, and the code that needs one calls ``.get_secret_value()``.

pydantic-settings does the work: each section is a model that converts and checks its values
(types, allowed words, ranges) and refuses unknown keys; the environment is read by its
``EnvSettingsSource`` with ``__`` as the section delimiter.  :func:`load_settings` turns every
validation error into one :class:`ConfigError` that names the key (``imap.port: Input should be
a valid integer``) and where the value came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

# templates/ and config/ are installed as the packages consultant.templates and consultant.config
# (pyproject.toml), so these are real directories in a checkout, an editable install and a wheel.
TEMPLATE_ROOT = Path(str(files("consultant.templates")))
CONFIG_ROOT = Path(str(files("consultant.config")))
DEFAULT_CONFIG = CONFIG_ROOT / "default.toml"
ENV_PREFIX = "CASECONSULTANT_"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def _comma_list(value: Any) -> Any:
    """An environment value is one string: ``"a,b"`` is the list ``["a", "b"]``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list that the environment gives as comma-separated text (NoDecode: not as JSON).
CommaList = Annotated[list[str], NoDecode]
SecretList = Annotated[list[SecretStr], NoDecode]


class Section(BaseModel):
    # Unknown keys are errors (a typo must not silently leave the default in force);
    # assignments are validated too, so code and tests that set a value get the same types.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatabaseSettings(Section):
    url: str = "sqlite:///var/caseconsultant.sqlite"


class BrokerSettings(Section):
    url: str = "sqla+sqlite:///var/broker.sqlite"
    result_backend: str = ""
    # Redis: seconds before a task taken by a worker that died is handed to another worker.
    visibility_timeout: int = 3600


class ServiceSettings(Section):
    address: str = "consult@localhost"
    name: str = "CaseConsultant"
    # Extra local addresses we accept mail for (SMTP intake answers 550 for anything else).
    aliases: CommaList = Field(default_factory=list)
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
    message_id_secret: SecretStr = SecretStr("")
    consultant_name: str = ""
    consultant_credential: str = ""

    _split = field_validator("aliases", mode="before")(_comma_list)


# Keys of one IMAP account that a [[imap.mailboxes]] table never inherits from [imap].
_PER_ACCOUNT = {"name", "password", "oauth2_refresh_token", "oauth2_client_secret"}


class ImapSettings(Section):
    host: str = ""
    port: int = 993
    ssl: bool = True
    username: str = ""
    password: SecretStr = SecretStr("")
    folder: str = "INBOX"
    processed_folder: str = ""
    sent_folder: str = ""
    idle: bool = True
    poll_interval: int = 60
    idle_timeout: int = 300
    max_backoff: int = 300
    # "password" (LOGIN) or "xoauth2" (Gmail, Microsoft 365): an access token got from
    # oauth2_token_url with the refresh token, refreshed before it expires.
    auth: Literal["password", "xoauth2"] = "password"
    oauth2_token_url: str = ""
    oauth2_client_id: str = ""
    oauth2_client_secret: SecretStr = SecretStr("")
    oauth2_refresh_token: SecretStr = SecretStr("")
    # A label for this mailbox in state, logs and alerts (default: username@host).
    name: str = ""
    # Health fails (and the stale metric is 1) for a mailbox with no successful fetch for this long.
    alert_after_minutes: int = 30
    # Further mailboxes: [[imap.mailboxes]] tables with any of the keys above (unset keys come
    # from [imap]); a key ending in _env names the environment variable holding its value,
    # e.g. password_env = "BILLING_IMAP_PASSWORD", so secrets stay out of the file.  They are
    # checked by all_mailboxes (at start-up, by load_settings), which needs the environment.
    mailboxes: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return bool(self.host) or bool(self.mailboxes)

    @property
    def label(self) -> str:
        return self.name or f"{self.username}@{self.host}"

    def all_mailboxes(self, environ: Mapping[str, str] | None = None) -> list[ImapSettings]:
        """Every mailbox to poll: [imap] itself when it has a host, then each [[imap.mailboxes]]."""
        env = os.environ if environ is None else environ
        result = [self.model_copy(update={"mailboxes": []})] if self.host else []
        inherited = self.model_dump(exclude={"mailboxes", *_PER_ACCOUNT})
        for index, table in enumerate(self.mailboxes):
            where = f"[[imap.mailboxes]] #{index + 1}"
            values: dict[str, Any] = {}
            for key, value in table.items():
                if key.endswith("_env"):
                    key = key[:-4]
                    if str(value) not in env:
                        raise ConfigError(f"{where} {key}_env: environment variable {value} is not set")
                    value = env[str(value)]
                values[key] = value
            try:
                mailbox = ImapSettings.model_validate({**inherited, **values})
            except ValidationError as exc:
                raise ConfigError(describe(exc, prefix=f"{where} ", model=ImapSettings)) from None
            if mailbox.mailboxes:
                raise ConfigError(f"{where} mailboxes: a mailbox cannot list further mailboxes")
            if not mailbox.host or not mailbox.username:
                raise ConfigError(f"{where}: host and username are required")
            result.append(mailbox)
        labels = [m.label + "/" + m.folder for m in result]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ConfigError(f"imap: the same mailbox folder is configured twice: {', '.join(duplicates)}")
        for mailbox in result:
            if mailbox.auth == "xoauth2" and not (
                    mailbox.oauth2_token_url and mailbox.oauth2_refresh_token.get_secret_value()):
                raise ConfigError(f"imap: {mailbox.label}: xoauth2 needs oauth2_token_url and "
                                  "oauth2_refresh_token")
        return result


class SmtpInSettings(Section):
    host: str = "127.0.0.1"
    port: int = 2525
    # Simultaneous SMTP sessions; one more is answered 421 (try later).
    max_sessions: int = 20


class SmtpOutSettings(Section):
    host: str = ""
    port: int = 25
    ssl: bool = False
    starttls: bool = False
    username: str = ""
    password: SecretStr = SecretStr("")
    # When set, outbound mail is written to this Maildir instead of SMTP (the demo uses it).
    maildir: str = ""
    timeout: int = 30
    max_attempts: int = 8
    # A backlog is sent in groups of this many answers per commit (consultant.outbox.send): a
    # sender killed mid-group leaves the group to reconcile against the Sent copy, or to a
    # human as needs_check (1: one answer per commit, the smallest such window).
    send_group: int = Field(default=10, ge=1)


PLAN_KINDS = ("lifetime", "monthly", "topup")


@dataclass(frozen=True)
class PlanSettings:
    """One plan as the quota code uses it (see :meth:`QuotaSettings.plan`).

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


class PlanTable(Section):
    """A ``[quota.plans]`` entry as written: ``pro = 100`` or ``pro = {kind = ..., answers = ...}``."""

    kind: Literal["lifetime", "monthly", "topup"] = "lifetime"
    answers: int = Field(ge=0)
    # A short month resets on its last day.
    reset_day: int = Field(default=1, ge=1, le=31)
    carry_over: bool = False

    @model_validator(mode="before")
    @classmethod
    def _number_is_lifetime(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"kind": "lifetime", "answers": value}
        return value

    @model_validator(mode="after")
    def _monthly_keys(self) -> PlanTable:
        # By value, not by presence: a dumped and re-read plan carries the defaults.
        if self.kind != "monthly" and (self.reset_day != 1 or self.carry_over):
            raise ValueError("reset_day and carry_over apply to monthly plans only")
        return self


class QuotaSettings(Section):
    guest: int = 1
    registered: int = 5
    # Further plans: `pro = 100` (lifetime: 100 answers on top of the guest answer), or a table
    # `pro = {kind = "monthly", answers = 20, reset_day = 1, carry_over = false}`,
    # `pack10 = {kind = "topup", answers = 10}`.
    plans: dict[str, PlanTable] = Field(default_factory=dict)
    # Monthly allowances reset at midnight in this IANA time zone.
    timezone: str = "UTC"
    # Where the over-quota notice sends people who want more answers (either or both).
    upgrade_address: str = ""
    upgrade_url: str = ""

    @field_validator("plans")
    @classmethod
    def _not_built_in(cls, plans: dict[str, PlanTable]) -> dict[str, PlanTable]:
        for name in plans:
            if name in ("guest", "registered"):
                raise ValueError(f"{name} is a built-in plan; set [quota] {name}")
        return plans

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}") from None
        return name

    def plan(self, name: str) -> PlanSettings:
        """The named plan; KeyError for an unknown name."""
        if name == "guest":
            return PlanSettings("guest", "lifetime", self.guest)
        if name == "registered":
            return PlanSettings("registered", "lifetime", self.guest + self.registered)
        table = self.plans[name]
        # A lifetime plan's answers come on top of the guest answer, as `pro = 100` does.
        total = self.guest + table.answers if table.kind == "lifetime" else table.answers
        return PlanSettings(name, table.kind, total, table.reset_day, table.carry_over)


class AuthenticitySettings(Section):
    # off: no check.  warn: record the result on the case, answer as usual.  hold: a mail whose
    # sender is not verified is held as `unverified` until the address confirms by reply.
    policy: Literal["off", "warn", "hold"] = "off"
    # The authserv-id our own receiving MTA writes in Authentication-Results (RFC 8601);
    # headers with any other id were written by someone else and are ignored.
    authserv_id: str = ""
    # Mail taken in by our SMTP listener has no upstream MTA: verify its DKIM signature here.
    verify_dkim: bool = False
    # DNS servers ("host" or "host:port") for DKIM key lookups; empty: the system resolver.
    dns_servers: CommaList = Field(default_factory=list)
    dns_timeout: float = 5.0

    _split = field_validator("dns_servers", mode="before")(_comma_list)

    def check(self) -> None:
        """Keys that only make sense together (not a validator: tests set them one by one)."""
        if self.policy != "off" and not self.authserv_id and not self.verify_dkim:
            raise ConfigError("authenticity.policy: on, but neither authserv_id nor verify_dkim "
                              "is set: nothing could ever verify a sender")


class ConsoleSettings(Section):
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: SecretStr = SecretStr("")
    secure_cookies: bool = False
    # Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are believed (passed to
    # uvicorn's forwarded_allow_ips).  Empty: believe nobody, so a client cannot pick its own
    # "address" per login attempt and walk around the per-address lockout.
    trusted_proxies: CommaList = Field(default_factory=list)
    # Only the consultant a case is assigned to may approve it (unassigned cases: anyone).
    only_assignee_approves: bool = False

    _split = field_validator("trusted_proxies", mode="before")(_comma_list)


def _hours(value: Any) -> Any:
    if isinstance(value, bool):  # `guest = true` is not a number of hours
        raise ValueError("expected a number of hours > 0")
    return value


Hours = Annotated[float, Field(gt=0), BeforeValidator(_hours)]


class SlaSettings(Section):
    """Turnaround targets: hours from a case's arrival to its answer, per plan (the plan names
    of ``[quota]``: guest, registered and those of ``[quota.plans]``); others get default_hours."""

    default_hours: Hours = 4.0
    plans: dict[str, Hours] = Field(default_factory=dict)
    # A case is "due soon" in the last this fraction of its target (0.25: the last hour of 4).
    due_soon_fraction: float = Field(default=0.25, ge=0, lt=1)

    def hours_for(self, plan: str) -> float:
        return float(self.plans.get(plan, self.default_hours))

    def check(self, quota: QuotaSettings) -> None:
        """A target for a plan that does not exist is a typo that would silently never apply
        (not a validator: it reads another section)."""
        known = {"guest", "registered", *quota.plans}
        for name in self.plans:
            if name not in known:
                raise ConfigError(f"sla.plans: unknown plan {name!r} (known: {', '.join(sorted(known))})")


class PrivacySettings(Section):
    # Fernet keys for the raw mail at rest, newest first (the first encrypts, all decrypt).
    # Set them in the environment: CASECONSULTANT_PRIVACY__RAW_MAIL_KEYS="new,old".
    raw_mail_keys: SecretList = Field(default_factory=list)
    # Used when raw_mail_keys is empty: created with one fresh key (mode 0600) on first use.
    key_file: str = "var/raw-mail.keys"
    # Raw mail (and its attachments) is purged this many days after it was received.
    retention_days: int = 30
    # Audit entries are kept this long (6 years), then pruned with an anchor that keeps the
    # chain verifiable.
    audit_retention_days: int = 2192

    _split = field_validator("raw_mail_keys", mode="before")(_comma_list)


class WorkersSettings(Section):
    # Pool size of each queue's workers (`caseconsultant worker --queue NAME`, and the thread
    # pools of `run` and `demo`).  One queue per kind of work: sending never waits for drafting.
    intake_concurrency: int = Field(default=2, ge=1)
    drafting_concurrency: int = Field(default=2, ge=1)
    sending_concurrency: int = Field(default=2, ge=1)
    # Pool of `caseconsultant worker --queue NAME`: prefork (processes) or threads.
    pool: Literal["prefork", "threads"] = "prefork"

    def concurrency(self, queue: str) -> int:
        value = getattr(self, f"{queue}_concurrency", None)
        if value is None:
            raise ConfigError(f"workers: has no {queue}_concurrency: {queue!r} is not a queue")
        return int(value)


class LoggingSettings(Section):
    # "text": one readable line per record; "json": one JSON object per line (time, level,
    # logger, message, process, thread, exc_info), for log shippers.  Always on stderr.
    format: Literal["text", "json"] = "text"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False,
        extra="forbid", validate_assignment=True)

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    imap: ImapSettings = Field(default_factory=ImapSettings)
    smtp_in: SmtpInSettings = Field(default_factory=SmtpInSettings)
    smtp_out: SmtpOutSettings = Field(default_factory=SmtpOutSettings)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)
    authenticity: AuthenticitySettings = Field(default_factory=AuthenticitySettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    workers: WorkersSettings = Field(default_factory=WorkersSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    # Code-data download locations (consultant.codes.update), free-form.
    codes: dict[str, Any] = Field(default_factory=dict)
    # The file these settings were loaded from (worker child processes are given it).
    _source: str = PrivateAttr("")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   env_settings: Any, dotenv_settings: Any,
                                   file_secret_settings: Any) -> tuple[Any, ...]:
        # Settings(...) is exactly its arguments (the defaults, in tests and the demo):
        # load_settings reads the file and the environment and passes them in.
        return (init_settings,)

    @property
    def source(self) -> str:
        return self._source

    @property
    def domain(self) -> str:
        return self.service.address.rpartition("@")[2] or "localhost"


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (``load_settings(environ=)``)
    rather than always ``os.environ``, so tests and tools can load settings without the
    process's overrides."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # case_sensitive=False: names are matched in lower case, as the base class does.
        return {name.lower(): value for name, value in self._environ.items()}


def _known(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where ``loc`` points (for an 'unknown key' message)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _from_env(values: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    node: Any = values
    for part in loc:
        if not isinstance(node, Mapping):
            return True  # inside a value the environment gave (an item of a list)
        if str(part) not in node:
            return False
        node = node[str(part)]
    return True


def describe(exc: ValidationError, prefix: str = "", model: type[BaseModel] = Settings,
             env_values: Mapping[str, Any] | None = None, file: str = "") -> str:
    """One line per error, each naming its key: ``imap.port: Input should be ... (got 'x')``."""
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = prefix + ".".join(str(part) for part in loc)
        if error["type"] == "extra_forbidden":
            known = _known(model, loc)
            message = "unknown key" + (f" (known: {', '.join(known)})" if known else "")
        else:
            message = error["msg"]
            value = error.get("input")
            # Security: the offending value is echoed only when it is not a secret field's.
            if isinstance(value, str | int | float) and not _is_secret(model, loc):
                message += f" (got {value!r})"
        if env_values is not None:
            name = ENV_PREFIX + "__".join(str(part) for part in loc).upper()
            message += f" [from {name}]" if _from_env(env_values, loc) else f" [in {file}]"
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def _is_secret(model: type[BaseModel], loc: tuple[int | str, ...]) -> bool:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return False
        annotation = field.annotation
        if annotation is SecretStr or "SecretStr" in repr(annotation):
            return True
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return False


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (or ``$CASECONSULTANT_CONFIG``, or the bundled default),
    then the ``CASECONSULTANT_<SECTION>__<KEY>`` variables of ``environ`` (default: os.environ)."""
    env = os.environ if environ is None else environ
    chosen = Path(path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)
    try:
        file_values = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {chosen}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: invalid TOML: {exc}") from None
    sections = set(Settings.model_fields)
    for name in env:
        section, delimiter, _ = name.lower().removeprefix(ENV_PREFIX.lower()).partition("__")
        # EnvSettingsSource ignores variables naming no field: a misspelt section must not
        # silently leave the file's value in force.
        if name.upper().startswith(ENV_PREFIX) and delimiter and section not in sections:
            raise ConfigError(f"{name}: unknown section {section!r} (known: {', '.join(sorted(sections))})")
    env_values = _Environment(env)()
    try:
        settings = Settings(**_merged(file_values, env_values))
    except ValidationError as exc:
        raise ConfigError(describe(exc, env_values=env_values, file=str(chosen))) from None
    settings._source = str(chosen)
    settings.sla.check(settings.quota)
    settings.authenticity.check()
    settings.imap.all_mailboxes(env)  # a mistake in [[imap.mailboxes]] fails at start-up
    _make_sqlite_folders(settings)
    return settings


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top, table by table (an env key replaces one file key)."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def _make_sqlite_folders(settings: Settings) -> None:
    """Relative SQLite paths are relative to the working directory; make sure the folder exists."""
    for url in (settings.database.url, settings.broker.url):
        for prefix in ("sqlite:///", "sqla+sqlite:///"):
            if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
                Path(url[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
