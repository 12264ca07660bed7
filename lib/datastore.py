"""MONAI Label's local datastore, refusing what does not belong before anything is written."""

from __future__ import annotations

import re
from typing import Any

import nibabel as nib
from monailabel.datastore.local import LocalDatastore

from .errors import InvalidInput, NotFound
from .label_info import to_app_classes
from .validation import check_image_file, check_label_file

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SAFE_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_id(value: str, what: str = "image id") -> str:
    """Ids become file names: no separators, no '..', no NUL, nothing but letters, digits, '.', '_', '-'."""
    if not isinstance(value, str) or not SAFE_ID.match(value) or ".." in value:
        raise InvalidInput(f"invalid {what} {value[:80]!r}: use up to 128 letters, digits, '.', '_' or '-'"
                           if isinstance(value, str) else f"invalid {what}")
    return value


class CheckedLocalDatastore(LocalDatastore):
    """Images must be readable 3D CT volumes and labels must fit their image, or the request gets a 4xx."""

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        if image_id:
            check_id(image_id)
        check_image_file(image_filename)
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        check_id(image_id)
        if not SAFE_TAG.match(label_tag or ""):
            raise InvalidInput(f"invalid label tag {str(label_tag)[:40]!r}")
        if image_id not in self.list_images():
            raise NotFound(f"no image {image_id!r} in the datastore")
        to_app_classes(label_filename, (label_info or {}).get("label_info"))
        check_label_file(label_filename, nib.load(self.get_image_uri(image_id)))
        return super().save_label(image_id, label_filename, label_tag, label_info)
