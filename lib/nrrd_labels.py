"""Labels as 3D Slicer saves them in NRRD, read into NIfTI for the app's checks and its datastore.

3D Slicer's MONAI Label module saves a label in the file extension its settings name: `.nii.gz` (the default),
`.nrrd` (a labelmap on the image's grid, one value per segment in label_info's order) or `.seg.nrrd` (the
segmentation node itself: segments in one or more layers, each segment's name, layer and value in the header, the
grid possibly cropped to the segments' extent). NRRD states its geometry in LPS (or RAS) with `space directions`
and `space origin`, NIfTI in RAS. Neither MONAI's readers nor nibabel read Slicer's segment metadata, hence this
reader over pynrrd.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np

from .data.nifti import nifti_image
from .errors import InvalidInput
from .label_info import NAMES

SLICER_OWN = {"background", "foreground scribbles", "background scribbles"}  # the module's segments, not labels
SPACES = {"left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1), "right-anterior-superior": (1, 1, 1),
          "ras": (1, 1, 1)}


def is_nrrd(path: str | Path) -> bool:
    return str(path).lower().endswith(".nrrd")


def ras_affine(header: dict[str, Any]) -> np.ndarray:
    """The voxel-to-RAS affine of an NRRD header's domain axes."""
    space = str(header.get("space", "")).lower()
    if space not in SPACES:
        raise InvalidInput(f"the NRRD label's space is {space or 'not given'!r}: expected left-posterior-superior "
                           f"or right-anterior-superior, as 3D Slicer writes")
    directions = np.asarray(header.get("space directions", []), float)
    rows = [d for d in directions if d.shape == (3,) and np.all(np.isfinite(d))]
    if len(rows) != 3:
        raise InvalidInput("the NRRD label does not have three spatial axes ('space directions')")
    affine = np.eye(4)
    affine[:3, :3] = np.array(rows).T
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), float)
    return np.diag([*SPACES[space], 1]) @ affine


def segments(header: dict[str, Any]) -> list[dict[str, Any]]:
    """Slicer's segment metadata (Segment<i>_Name, _LabelValue, _Layer), in order; empty for a plain labelmap."""
    found, i = [], 0
    while f"Segment{i}_Name" in header or f"Segment{i}_ID" in header:
        name = str(header.get(f"Segment{i}_Name", header.get(f"Segment{i}_ID", "")))
        try:
            value, layer = int(header.get(f"Segment{i}_LabelValue", 1)), int(header.get(f"Segment{i}_Layer", 0))
        except ValueError:
            raise InvalidInput(f"segment {name!r} of the .seg.nrrd label has a value or layer that is not a "
                               f"whole number") from None
        found.append({"name": name, "value": value, "layer": layer})
        i += 1
    return found


def _layers(data: np.ndarray, header: dict[str, Any]) -> np.ndarray:
    """(layers, X, Y, Z): a segmentation's list axis first (a single-layer one has none)."""
    if data.ndim == 3:
        return data[None]
    kinds = [str(k).lower() for k in header.get("kinds", [])]
    if data.ndim != 4 or len(kinds) != 4 or sum(k == "domain" or k == "space" for k in kinds) != 3:
        raise InvalidInput(f"the .seg.nrrd label has shape {data.shape} and kinds {kinds}: expected 3 spatial axes "
                           f"and at most one list of layers")
    return np.moveaxis(data, next(i for i, k in enumerate(kinds) if k not in ("domain", "space")), 0)


def segmentation_classes(data: np.ndarray, header: dict[str, Any]) -> np.ndarray:
    """A Slicer segmentation in the app's classes (tumour over liver where layers overlap)."""
    layers = _layers(data, header)
    found = segments(header)
    names = {s["name"]: s["name"].strip().lower().replace("_", " ") for s in found}
    unknown = [n for n, key in names.items() if key not in NAMES and key not in SLICER_OWN]
    if unknown:
        raise InvalidInput(f"the .seg.nrrd label has segments this model does not have: {unknown[:5]}; expected "
                           f"liver and tumour")
    out = np.zeros(layers.shape[1:], np.uint8)
    for s in sorted(found, key=lambda s: NAMES.get(names[s["name"]], 0)):  # liver first, tumour painted over it
        cls = NAMES.get(names[s["name"]], 0)
        if cls and not 0 <= s["layer"] < len(layers):
            raise InvalidInput(f"segment {s['name']!r} is on layer {s['layer']}, and the file has {len(layers)}")
        if cls:
            out[layers[s["layer"]] == s["value"]] = cls
    return out


def onto_image_grid(data: np.ndarray, affine: np.ndarray, image: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """A label on a crop of the image's grid (same axes and spacing, whole-voxel offset, inside), as Slicer saves
    a segmentation cropped to its extent, padded out to the image's grid; anything else as it is (the checks
    that follow name the difference)."""
    shape = image.shape[:3]
    if data.shape == shape or not np.allclose(affine[:3, :3], image.affine[:3, :3], atol=1e-3, rtol=1e-4):
        return data, affine
    offset = np.linalg.solve(image.affine[:3, :3], affine[:3, 3] - image.affine[:3, 3])
    start = np.round(offset).astype(int)
    if not np.allclose(offset, start, atol=1e-2) or (start < 0).any() or (start + data.shape > np.array(shape)).any():
        return data, affine
    out = np.zeros(shape, data.dtype)
    out[tuple(slice(a, a + n) for a, n in zip(start, data.shape))] = data
    return out, image.affine


def nrrd_to_nifti(path: str, image: nib.Nifti1Image, label_info: Any) -> tuple[str, Any]:
    """Write `path`.nii.gz: the NRRD label in RAS, a segmentation already in the app's classes (its header names
    the segments) and placed on the image's grid. Returns the NIfTI's path and the label_info still to apply
    (None for a segmentation)."""
    try:
        data, header = nrrd.read(path, index_order="F")
    except Exception as e:  # pynrrd raises several kinds for broken files
        raise InvalidInput(f"the label is not a readable NRRD file ({type(e).__name__}: {str(e)[:120]})") from e
    affine = ras_affine(header)
    if segments(header):
        data, label_info = segmentation_classes(data, header), None
    elif data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidInput(f"the NRRD label has shape {data.shape}: expected a 3D labelmap")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InvalidInput("the label has non-finite values")
    data, affine = onto_image_grid(data, affine, image)
    out = f"{path}.nii.gz"
    nib.save(nifti_image(np.asarray(data), affine), out)
    return out, label_info
