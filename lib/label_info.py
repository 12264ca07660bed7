"""Labels in the client's segment order, turned into the app's class indices (1 liver, 2 tumour).

3D Slicer saves a label with one value per segment in the order of its segment list, and names them in the
request's `label_info`: `[{"name": "tumour", "idx": 1}, {"name": "liver", "idx": 2}]` says voxels of value 1 are
tumour. Its `idx` counts segments it left out (background, scribbles), so when the idx values are not exactly
1..n the i-th entry is value i + 1, which is what Slicer wrote. MONAI Label stores label_info without reading it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .data.nifti import nifti_image
from .errors import InvalidInput
from .model.network import LABELS

NAMES = {"background": 0, "liver": LABELS["liver"], "tumour": LABELS["tumour"], "tumor": LABELS["tumour"],
         "liver tumour": LABELS["tumour"], "liver tumor": LABELS["tumour"], "lesion": LABELS["tumour"],
         "liver lesion": LABELS["tumour"]}


def value_to_class(label_info: Any) -> dict[int, int] | None:
    """{value in the client's file: app class} from label_info; None when it names nothing (the file is taken
    as it is)."""
    if not label_info:
        return None
    if not isinstance(label_info, list) or not all(isinstance(e, dict) and "name" in e for e in label_info):
        raise InvalidInput("label_info must be a list of {\"name\": ..., \"idx\": ...}")
    names = [str(e["name"]).strip().lower().replace("_", " ") for e in label_info]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise InvalidInput(f"label_info names segments this model does not have: {unknown[:5]}; "
                           f"expected liver and tumour")
    try:
        idx = [int(e["idx"]) for e in label_info]
    except (KeyError, TypeError, ValueError):
        idx = []
    values = idx if sorted(idx) == list(range(1, len(names) + 1)) else list(range(1, len(names) + 1))
    return {v: NAMES[n] for v, n in zip(values, names)}


def to_app_classes(label_file: str, label_info: Any) -> str:
    """Rewrite the label file in place with the app's classes when label_info orders segments otherwise. A value
    in the file that no entry names is refused: its meaning is unknown."""
    mapping = value_to_class(label_info)
    if mapping is None:
        return label_file
    path = Path(label_file)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise InvalidInput(f"a label with label_info must be NIfTI (.nii or .nii.gz), got {path.name!r}")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel and gzip raise many kinds for broken files
        raise InvalidInput(f"the label is not a readable NIfTI file ({type(e).__name__})") from e
    unnamed = sorted(set(np.unique(data).tolist()) - {0} - set(mapping))
    if unnamed:
        raise InvalidInput(f"the label has values {unnamed[:5]} that label_info does not name")
    if all(v == c for v, c in mapping.items()):
        return label_file
    out = np.zeros(data.shape, np.uint8)
    for value, cls in mapping.items():
        out[data == value] = cls
    nib.save(nifti_image(out, img.affine), str(path))
    return label_file
