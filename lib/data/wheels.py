"""Files that come from the package registry (PyPI): a wheel fetched once with `pip download --no-deps` (nothing is
installed), kept in a cache, and checked against the hash PyPI publishes for it where one is given."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path


class DownloadError(RuntimeError):
    """A wheel could not be fetched, or is not the one published; the message names the cause."""


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liver-tumor"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(requirement: str, dest: Path, find_links: str | None = None, timeout: float = 300,
                   python_version: str | None = None) -> Path:
    """Fetch one wheel without installing it or its dependencies. python_version: for a wheel that declares
    only an older Python (its files are all that is used here)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "-d", str(dest), requirement]
    if python_version:
        cmd[4:4] = ["--python-version", python_version]
    if find_links:
        cmd[4:4] = ["--no-index", "--find-links", find_links]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DownloadError(f"could not download {requirement}: the package index did not answer in {timeout:.0f} s")
    wheels = sorted(dest.glob(f"{requirement.split('==')[0].replace('-', '_')}-*.whl"))
    if proc.returncode or not wheels:
        said = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        raise DownloadError(f"could not download {requirement} from the package index (is it reachable?): "
                            f"{said[-1].strip() if said else 'pip failed'}")
    return wheels[-1]


def cached_wheel(requirement: str, filename: str, cache: Path | None = None, find_links: str | None = None,
                 python_version: str | None = None, published_sha256: str | None = None) -> Path:
    """The wheel from the cache, downloaded into it the first time; with published_sha256, a file that does not
    match is removed and refused."""
    cache = cache or default_cache()
    wheel = cache / filename
    if not wheel.exists():
        wheel = download_wheel(requirement, cache, find_links, python_version=python_version)
    if published_sha256 and sha256(wheel) != published_sha256:
        wheel.unlink()
        raise DownloadError(f"{wheel.name} does not have the SHA-256 PyPI publishes for it ({published_sha256}): "
                            "removed; it will be fetched again")
    return wheel
