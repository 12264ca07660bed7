"""The wheels `scripts/device-check` carries to a GPU machine, fetched here beforehand (`--prepare .whl`).

That machine runs Python 3.12 with its own torch, NumPy 2, SciPy, matplotlib, scikit-image, pytest and requests,
but no MONAI, nibabel or MONAI Label, and reaches no package index. What the check imports there, found by
importing its modules in a Python with NumPy 2 and only these beside it, is listed below (the image's own packages
are left as they are). MONAI Label's wheel is 20 MB of which 19 are its OHIF viewer and plugin screenshots: it is
repacked without them. ITK (81 MB) stays behind: MONAI Label's writer imports it at the top but writes NIfTI
without it, so scripts/device-check puts a module named itk there that fails on any use.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from ..settings import APP_DIR

ROOT = APP_DIR.parents[1]
LIMIT_MB = 64 * 1.048576  # what travels to the machine, the working tree and the wheels together (64 MiB)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
WHEELS = (
    "monai==1.6.1", "monailabel==0.8.5", "nibabel==5.4.2", "pynrrd==1.1.3", "pytorch-ignite==0.5.5",
    "pydantic==2.14.4", "pydantic-core==2.50.5", "pydantic-settings==2.16.3", "annotated-types==0.8.0",
    "typing-inspection==0.4.5", "typing-extensions==4.16.0", "python-dotenv==1.2.4",
    "fastapi==0.165.0", "starlette==1.10.0", "annotated-doc==0.0.7",
    "opentelemetry-api==1.45.2", "opentelemetry-semantic-conventions==0.66b2",
    "watchdog==7.1.0", "expiring-dict==1.1.2", "mrcfile==1.5.4", "isal==1.9.1",
)
DROPPED = ("monailabel/endpoints/static/ohif/", ".data/", "tests/")  # from MONAI Label's wheel


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim(wheel: Path) -> None:
    """Rewrite the wheel without the DROPPED paths, its RECORD to match."""
    out = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for item in src.infolist():
            if item.filename == record_name or any(part in item.filename for part in DROPPED):
                continue
            data = src.read(item)
            dst.writestr(item, data)
            lines.append(_record_line(item.filename, data))
        dst.writestr(record_name, "\n".join([*lines, f"{record_name},,"]) + "\n")
    out.replace(wheel)


def tree_mb() -> float:
    """The working tree that travels: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / p.decode()).stat().st_size for p in listed if p and (ROOT / p.decode()).is_file()) / 1e6


def prepare(folder: Path) -> dict:
    """Fetch WHEELS for CPython 3.12 on manylinux x86-64 into `folder`, slim MONAI Label's, check the size."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp",
               *[a for p in PLATFORMS for a in ("--platform", p)], "--dest", str(folder), *WHEELS]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip download failed: {proc.stderr.strip()[-500:]}")
    for wheel in folder.glob("monailabel-*.whl"):
        slim(wheel)
    wheels = sorted(folder.glob("*.whl"))
    wheels_mb = sum(w.stat().st_size for w in wheels) / 1e6
    tree = tree_mb()  # .whl/ is ignored (.gitignore), so not counted here: it travels as a carried path
    if tree + wheels_mb > LIMIT_MB:
        raise RuntimeError(f"the working tree ({tree:.1f} MB) and the wheels ({wheels_mb:.1f} MB) are over the "
                           f"{LIMIT_MB:.1f} MB that travel")
    return {"wheels": [w.name for w in wheels], "wheels_mb": round(wheels_mb, 1), "tree_mb": round(tree, 1),
            "limit_mb": round(LIMIT_MB, 1)}
