"""MONAI Label's DICOMweb datastore with final labels stored back to the PACS as DICOM SEG written in Python.

MONAI Label's own `DICOMWebDatastore.save_label` calls dcmqi's binary (lib.dicom.seg says why not). Labels are checked
and written to the local cache as in the local datastore (lib.datastore); everything else (the series cache, NIfTI
conversion, reading SEG back for training) is MONAI Label's, less the temporary NIfTI its conversion leaves.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.utils.convert import binary_to_image
from monailabel.interfaces.datastore import DefaultLabelTag

from ..datastore import AtomicWrites
from ..errors import InvalidInput, NotFound
from .seg import write_seg

logger = logging.getLogger(__name__)


class SegDICOMWebDatastore(AtomicWrites, DICOMWebDatastore):
    def get_image_uri(self, image_id: str) -> str:
        """MONAI Label's, without the NIfTI it converts a series to left behind: its DICOMWebDatastore writes the
        conversion to a temporary file, copies it into the cache (add_image) and hands back the temporary file,
        which nothing removes: one CT volume in the server's temporary folder for each series it segments, for as
        long as the machine runs. The cached copy is handed back and the temporary file removed."""
        path = super().get_image_uri(image_id)
        cached = os.path.realpath(os.path.join(self._datastore.image_path(), f"{image_id}.nii.gz"))
        temporary = os.path.realpath(tempfile.gettempdir())
        if path != cached and os.path.isfile(cached) and os.path.realpath(path).startswith(temporary + os.sep):
            os.unlink(path)
            return cached
        return path

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any],
                   label_id: str = "") -> str:
        if image_id not in self.list_images():
            raise NotFound(f"no series {image_id!r} on the DICOMweb server")
        image_uri = self.get_image_uri(image_id)  # fetched into the cache and converted, once
        converted = []
        if label_filename.endswith(".bin"):  # OHIF sends raw voxels
            label_filename = binary_to_image(image_uri, label_filename)
            converted.append(label_filename)
        try:
            checked = self.check_label(image_id, label_filename, label_info)
            if checked != label_filename:
                converted.append(checked)
            if label_tag == DefaultLabelTag.FINAL:
                label_info = {**label_info, **self._upload_seg(image_id, checked)}
            return self.store_label(image_id, checked, label_tag, label_info)
        finally:
            for path in converted:
                os.unlink(path)

    def _upload_seg(self, image_id: str, label_filename: str) -> dict[str, Any]:
        series_dir = Path(self._datastore.image_path()) / image_id
        files = sorted(p for p in series_dir.iterdir() if p.suffix == ".dcm")
        with tempfile.TemporaryDirectory() as tmp:
            seg = write_seg(Path(label_filename), files, Path(tmp) / "seg.dcm")
            from monailabel.datastore.utils.dicom import dicom_web_upload_dcm

            seg_series = dicom_web_upload_dcm(str(seg), self._client)
        if not seg_series:
            raise InvalidInput("the DICOMweb server did not accept the DICOM SEG")
        info = self.get_image_info(image_id)
        logger.info(f"DICOM SEG of {image_id} stored as series {seg_series}")
        DICOMWebDatastore.get_labeled_images.cache_clear()  # MONAI Label keeps it for 2 hours otherwise
        return {"SeriesInstanceUID": seg_series, "Modality": "SEG", "PatientID": info.get("PatientID"),
                "StudyInstanceUID": info.get("StudyInstanceUID")}
