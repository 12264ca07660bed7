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


def write_atomic(path: Path, write: Callable[[str], Any]) -> Path:
    """Call write(temporary path), then rename the result to path; the temporary file keeps path's suffixes so
    that writers choosing a format by extension (nibabel) write the right one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes), dir=path.parent)
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
    return write_atomic(dst, lambda p: shutil.copyfile(src, p))
