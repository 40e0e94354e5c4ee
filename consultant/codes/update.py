"""``codes update``: download the current CMS/CDC files named in settings and import them.

Settings (``[codes]`` table): ``<key>_url`` for key in hcpcs, mue, aoc, ptp, icd10cm,
ioce_versions (a string, or a list for PTP parts), and ``download_dir`` (default
``var/codes-downloads``).  A zip is unpacked to the member the importer reads (PTP zips are read
as they are).  CMS's quarterly HCPCS zip also carries the processing notes, the NOC list and,
when CMS issued them, corrections and the annual transaction report: each member present is
imported as its own release (a member the zip lacks is passed over, not an error).  Re-running is
cheap: a file whose sha256 is already the current release is not imported again.
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
    # The xlsx pattern names the code file itself, not the ..._ANWEB_Corrections/_Transaction
    # Report workbooks beside it in the same zip.
    "hcpcs": ("hcpcs", ["*ANWEB*.txt", "*ANWEB_[0-9v]*.xlsx"]),
    "mue": ("mue", ["*.csv", "*.xlsx"]),
    "aoc": ("aoc", ["*.xlsx", "*.txt"]),
    "ptp": ("ptp", []),
    "ioce_versions": ("ioce-versions", []),
}
# Further files inside a source's zip, each imported as a release of its own kind.
COMPANIONS = {
    "hcpcs": [("hcpcs-notes", ["proc_notes*.txt"]), ("hcpcs-noc", ["NOC*.xlsx"]),
              ("hcpcs-corrections", ["*ANWEB*Corrections*.xlsx"]),
              ("hcpcs-transactions", ["*ANWEB*Transaction*.xlsx"])],
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
        downloads: list[Path] = []
        try:
            downloads = [download(url, folder) for url in urls]
            files = [unpack(path, patterns) for path in downloads]
            progress: ProgressFn = progress_for(kind) if progress_for else no_progress
            result.outcome = import_release(factory, kind, files, progress=progress)
        except Exception as exc:  # noqa: BLE001 - reported per source; the others still run
            result.error = f"{type(exc).__name__}: {exc}"
        results.append(result)
        for companion, member_patterns in COMPANIONS.get(key, []):
            zips = [path for path in downloads if zipfile.is_zipfile(path)]
            extra = UpdateResult(f"{key}:{companion}", urls)
            try:
                members = [unpack(path, member_patterns) for path in zips if _has_member(path, member_patterns)]
                if not members:
                    continue
                progress = progress_for(companion) if progress_for else no_progress
                extra.outcome = import_release(factory, companion, members[0], progress=progress)
            except Exception as exc:  # noqa: BLE001 - as above
                extra.error = f"{type(exc).__name__}: {exc}"
            results.append(extra)
    return results


def _has_member(path: Path, patterns: list[str]) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any(fnmatch.fnmatch(Path(n).name, p) for n in zf.namelist() for p in patterns)
