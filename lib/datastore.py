"""MONAI Label's local datastore, refusing what does not belong before anything is written, and writing so that a
killed server leaves every file whole.

MONAI Label copies images and labels into place with shutil.copy and rewrites datastore_v2.json in place: a
server killed in the middle leaves a truncated label or an index that is not JSON. Here each file is written to a
temporary file beside it and renamed over the old one, under MONAI Label's own lock, with the same bookkeeping.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import nibabel as nib
from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.interfaces.exception import ImageNotFoundException

from .data.atomic import copy_file, write_atomic
from .errors import InvalidInput, NotFound
from .input_checks import check_image_file, check_label_file
from .label_info import to_app_classes
from .nrrd_labels import is_nrrd, nrrd_to_nifti

logger = logging.getLogger(__name__)
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SAFE_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_id(value: str, what: str = "image id") -> str:
    """Ids become file names: no separators, no '..', no NUL, nothing but letters, digits, '.', '_', '-'."""
    if not isinstance(value, str) or not SAFE_ID.match(value) or ".." in value:
        raise InvalidInput(f"invalid {what} {value[:80]!r}: use up to 128 letters, digits, '.', '_' or '-'"
                           if isinstance(value, str) else f"invalid {what}")
    return value


class AtomicWrites(LocalDatastore):
    """MONAI Label's local datastore (or a remote one's local cache) writing labels and its index through a
    temporary file renamed into place, with the same bookkeeping, under MONAI Label's own lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # MONAI Label's lock is a file lock between processes; within the server, request threads and the
        # background scorer update the same index, which must not change while it is written out
        self._guard = threading.RLock()
        super().__init__(*args, **kwargs)
        for partial in Path(self._datastore_path).rglob(".*.part"):  # copies a killed server left unfinished
            logger.warning(f"removing {partial}, a copy that was cut short")
            partial.unlink(missing_ok=True)

    def check_label(self, image_id: str, label_filename: str, label_info: dict[str, Any] | None) -> str:
        """The label in the app's classes (label_info's segment order) and on its image's grid, or a 422. Returns
        the file to store: the label itself, or for 3D Slicer's NRRD files the NIfTI written beside it."""
        image = nib.load(self.get_image_uri(image_id))
        info = (label_info or {}).get("label_info")
        if is_nrrd(label_filename):
            label_filename, info = nrrd_to_nifti(label_filename, image, info)
        to_app_classes(label_filename, info)
        check_label_file(label_filename, image)
        return label_filename

    def store_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """LocalDatastore.save_label, the copy made atomic."""
        obj = self._datastore.objects.get(image_id)
        if not obj:
            raise ImageNotFoundException(f"Image {image_id} not found")
        _, ext = self._to_id(os.path.basename(label_filename))
        name = self._filename(image_id, ext)
        with self._guard, FileLock(self._lock_file):
            copy_file(Path(label_filename), Path(self._datastore.label_path(label_tag)) / name)
            info = {**(label_info or {}), "ts": int(time.time()), "name": name}
            obj.labels[label_tag] = DataModel(info=info, ext=ext)
            self._update_datastore_file(lock=False)
        logger.info(f"Saved label {label_tag} of {image_id}")
        return image_id

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        with self._guard:
            super().update_image_info(image_id, info)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        with self._guard:
            super().update_label_info(label_id, label_tag, info)

    def _update_datastore_file(self, lock: bool = True) -> None:
        def write() -> None:
            self._ignore_event_config = True
            text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
            write_atomic(Path(self._datastore_config_path), lambda tmp: Path(tmp).write_text(text))
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        with self._guard:
            if lock:
                with FileLock(self._lock_file):
                    write()
            else:
                write()


class CheckedLocalDatastore(AtomicWrites):
    """Images must be readable 3D CT volumes within `max_image_mb` and labels must fit their image, or the request
    gets a 4xx."""

    def __init__(self, *args: Any, max_image_mb: float | None = None, **kwargs: Any) -> None:
        self.max_image_mb = max_image_mb
        super().__init__(*args, **kwargs)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        if image_id:
            check_id(image_id)
        check_image_file(image_filename, self.max_image_mb)
        default_id, ext = self._to_id(os.path.basename(image_filename))
        image_id = image_id or check_id(default_id)
        name = self._filename(image_id, ext)
        with self._guard, FileLock(self._lock_file):
            copy_file(Path(image_filename), Path(self._datastore.image_path()) / name)
            info = {**(image_info or {}), "ts": int(time.time()), "name": name}
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
            self._update_datastore_file(lock=False)
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        check_id(image_id)
        if not SAFE_TAG.match(label_tag or ""):
            raise InvalidInput(f"invalid label tag {str(label_tag)[:40]!r}")
        if image_id not in self.list_images():
            raise NotFound(f"no image {image_id!r} in the datastore")
        checked = self.check_label(image_id, label_filename, label_info)
        try:
            return self.store_label(image_id, checked, label_tag, label_info)
        finally:
            if checked != label_filename:
                os.unlink(checked)
