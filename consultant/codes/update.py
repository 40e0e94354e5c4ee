"""``codes update``: download the current CMS/CDC files named in settings and import them.

Settings (``[codes]`` table): ``<kind>_url`` for kind in hcpcs, mue, aoc, ptp, icd10cm (a string,
or a list for PTP parts), and ``download_dir`` (default ``var/codes-downloads``).  A zip is
unpacked to the member the importer reads (PTP zips are read as they are).  Re-running is cheap:
a file whose sha256 is already the current release is not imported again.
"""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.orm import Session, sessionmaker

from consultant.codes.files import ProgressFn
from consultant.codes.importers import no_progress
from consultant.codes.releases import ImportOutcome, import_release

# settings key prefix -> (import kind, zip member patterns in order of preference)
SOURCES = {
    "icd10cm": ("icd10cm-xml", ["*tabular*.xml"]),
    "hcpcs": ("hcpcs", ["*ANWEB*.txt", "*ANWEB*.xlsx"]),
    "mue": ("mue", ["*.csv", "*.xlsx"]),
    "aoc": ("aoc", ["*.xlsx", "*.txt"]),
    "ptp": ("ptp", []),
}
TIMEOUT = 60


@dataclass
class UpdateResult:
    key: str
    urls: list[str]
    outcome: ImportOutcome | None = None
    error: str | None = None


def configured(codes: dict[str, Any]) -> dict[str, list[str]]:
    """The URLs configured per source key (empty sources omitted)."""
    out = {}
    for key in SOURCES:
        value = codes.get(f"{key}_url")
        if not value:
            continue
        out[key] = [value] if isinstance(value, str) else [str(v) for v in value]
    return out


def download(url: str, folder: Path) -> Path:
    """Fetch ``url`` into ``folder`` (via a temporary file, so a broken download leaves nothing)."""
    name = Path(urlparse(url).path).name or "download"
    target = folder / name
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:  # noqa: S310 (operator-configured URL)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with open(fd, "wb") as fh:
            shutil.copyfileobj(resp, fh, 1 << 20)
    Path(tmp).replace(target)
    return target


def unpack(path: Path, patterns: list[str]) -> Path:
    """The file to import: ``path`` itself, or the first zip member matching ``patterns``."""
    if not patterns or not zipfile.is_zipfile(path):
        return path
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for pattern in patterns:
            hits = sorted(n for n in names if fnmatch.fnmatch(Path(n).name, pattern))
            if hits:
                member = hits[-1]
                target = path.with_name(Path(member).name)
                with zf.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                return target
    raise ValueError(f"{path.name}: no member matching {', '.join(patterns)}")


def update(codes: dict[str, Any], factory: sessionmaker[Session],
           progress_for: Any = None) -> list[UpdateResult]:
    """Download and import every configured source; one failing source does not stop the rest."""
    folder = Path(codes.get("download_dir") or "var/codes-downloads")
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for key, urls in configured(codes).items():
        kind, patterns = SOURCES[key]
        result = UpdateResult(key, urls)
        try:
            files = [unpack(download(url, folder), patterns) for url in urls]
            progress: ProgressFn = progress_for(kind) if progress_for else no_progress
            result.outcome = import_release(factory, kind, files, progress=progress)
        except Exception as exc:  # noqa: BLE001 - reported per source; the others still run
            result.error = f"{type(exc).__name__}: {exc}"
        results.append(result)
    return results
