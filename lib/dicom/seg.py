"""Labels as DICOM SEG objects over their source CT series, and back.

MONAI Label writes DICOM SEG with dcmqi's `itkimage2segimage` binary, which it downloads from GitHub (impossible
here, and an external binary to keep in step). pydicom-seg writes and reads SEG in Python; MONAI Label already
depends on it and reads SEG with it, so labels go out and come back through the same library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pydicom_seg
import SimpleITK as sitk

from ..errors import InvalidInput
from ..model.network import LABELS

# segment names a PACS user sees; codes from SNOMED CT as DICOM's segmentation templates use them
SEGMENTS = {
    LABELS["liver"]: ("Liver", ("10200004", "Liver"), ("123037004", "Anatomical Structure"), (221, 130, 101)),
    LABELS["tumour"]: ("Liver tumour", ("108369006", "Neoplasm"), ("49755003", "Morphologically Altered Structure"),
                       (144, 238, 144)),
}


def _template(series_description: str) -> pydicom.Dataset:
    segments = []
    for number, (name, (type_code, type_meaning), (cat_code, cat_meaning), rgb) in SEGMENTS.items():
        segments.append({
            "labelID": number, "SegmentLabel": name, "SegmentDescription": name,
            "SegmentAlgorithmType": "SEMIAUTOMATIC", "SegmentAlgorithmName": "MONAI Label liver_tumor",
            "SegmentedPropertyCategoryCodeSequence": {"CodeValue": cat_code, "CodingSchemeDesignator": "SCT",
                                                      "CodeMeaning": cat_meaning},
            "SegmentedPropertyTypeCodeSequence": {"CodeValue": type_code, "CodingSchemeDesignator": "SCT",
                                                  "CodeMeaning": type_meaning},
            "recommendedDisplayRGBValue": list(rgb),
        })
    return pydicom_seg.template.from_dcmqi_metainfo({
        "ContentCreatorName": "MONAILabel", "ClinicalTrialSeriesID": "Session1", "ClinicalTrialTimePointID": "1",
        "SeriesDescription": series_description, "SeriesNumber": "300", "InstanceNumber": "1",
        "segmentAttributes": [segments], "ContentLabel": "SEGMENTATION",
        "ContentDescription": "Liver and liver tumour", "BodyPartExamined": "ABDOMEN",
    })


def write_seg(label: Path, series_files: list[Path], out: Path, description: str = "Liver and tumour") -> Path:
    """The label file (0 background, 1 liver, 2 tumour, on the series' grid) as a DICOM SEG referencing the series."""
    mask = sitk.ReadImage(str(label))
    values = set(np.unique(sitk.GetArrayViewFromImage(mask)).tolist())
    if not values - {0}:
        raise InvalidInput("the label is empty: a DICOM SEG needs at least one liver or tumour voxel")
    if values - {0, *SEGMENTS}:
        raise InvalidInput(f"the label has values {sorted(values - {0, *SEGMENTS})}: expected 0, 1 (liver), 2 (tumour)")
    mask = sitk.Cast(mask, sitk.sitkUInt8)
    writer = pydicom_seg.MultiClassWriter(template=_template(description), inplane_cropping=False,
                                          skip_empty_slices=True, skip_missing_segment=False)
    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in series_files]
    try:
        dataset = writer.write(mask, sources)
    except ValueError as e:  # the label does not lie on the series' slices
        raise InvalidInput(f"the label does not fit its DICOM series: {e}") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(str(out))
    return out


def read_seg(path: Path) -> tuple[sitk.Image, dict[int, str]]:
    """A SEG file as one label image (segment numbers as values) and the segments' names by number."""
    dataset = pydicom.dcmread(str(path))
    result = pydicom_seg.MultiClassReader().read(dataset)
    names = {int(s.SegmentNumber): str(s.SegmentLabel) for s in dataset.SegmentSequence}
    return result.image, names
