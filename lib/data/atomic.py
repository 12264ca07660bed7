"""Writes that never leave a half-written file behind: through a temporary file in the same folder, renamed
into place once complete (a rename within one file system is atomic)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import nibabel as nib


def write_atomic(path: Path, write: Callable[[str], Any], suffix: str | None = None) -> Path:
    """Call write(temporary path), then rename the result to path. The temporary file keeps path's suffixes so
    that writers choosing a format by extension (nibabel) write the right one, unless `suffix` is given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_nifti(img: nib.spatialimages.SpatialImage, path: Path) -> Path:
    return write_atomic(path, lambda p: nib.save(img, p))


def save_json(obj: Any, path: Path) -> Path:
    return write_atomic(path, lambda p: Path(p).write_text(json.dumps(obj, indent=1) + "\n"))


def copy_file(src: Path, dst: Path) -> Path:
    """A copy that no folder watcher takes for the file itself while it is written (it ends in .part)."""
    return write_atomic(dst, lambda p: shutil.copyfile(src, p), suffix=".part")
