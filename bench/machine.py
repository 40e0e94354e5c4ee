"""Facts about the machine and the software a run measured, printed and kept beside the figures."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

PACKAGES = ["celery", "kombu", "redis", "SQLAlchemy", "psycopg", "IMAPClient", "aiosmtpd",
            "simple-icd-10-cm", "Jinja2"]


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_gib() -> float | None:
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def facts(env: object | None = None) -> dict[str, object]:
    """Cores, CPU, memory, load, Python, package versions and (given an Env) server versions."""
    out: dict[str, object] = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _mem_gib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
    }
    if env is not None:
        out["servers"] = server_versions(env)
    return out


def server_versions(env) -> dict[str, str]:  # type: ignore[no-untyped-def]
    versions: dict[str, str] = {}
    try:
        import redis

        client = redis.Redis.from_url(env.redis_url)
        versions["redis"] = str(client.info("server").get("redis_version"))
        client.close()
    except Exception as exc:  # noqa: BLE001
        versions["redis"] = f"? ({exc})"
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(env.pg_admin_url)
        with engine.connect() as c:
            versions["postgresql"] = str(c.execute(text("show server_version")).scalar())
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        versions["postgresql"] = f"? ({exc})"
    try:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        versions["dovecot"] = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                             timeout=10).stdout.strip()
    except Exception as exc:  # noqa: BLE001
        versions["dovecot"] = f"? ({exc})"
    versions["redis_url"] = _mask(env.redis_url)
    versions["postgres_url"] = _mask(env.pg_admin_url)
    return versions


def _mask(url: str) -> str:
    """Show which server was used (own or $REDIS_URL/$DATABASE_URL) without any password."""
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1)
        user = rest.split(":", 1)[0]
        return f"{scheme}//{user}:***@{rest.split('@', 1)[1]}"
    return url
