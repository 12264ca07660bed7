"""One phantom study: sample, render, orient and describe it; write it to disk without half-written files."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from ..atomic import save_json, save_nifti
from ..nifti import nifti_image
from .acquisition import Acquisition, Grid, grid_for, sample_acquisition
from .anatomy import Anatomy, sample_anatomy
from .body import sample_body
from .render import render
from .tissues import LABEL_NAMES, LIVER_TISSUES, PHASES, TUMOUR_BASE, Tissue, hu_table
from .tumours import tumour_hu

GENERATOR_VERSION = 2  # 2: the pelvis
# independent random streams per study, so that the anatomy does not depend on the preset or on the noise
ANATOMY, ACQUISITION, CONTRAST, NOISE, PELVIS = 1, 2, 3, 4, 5


@dataclass
class Study:
    id: str
    image: nib.Nifti1Image
    label: nib.Nifti1Image
    params: dict
    tissue: nib.Nifti1Image | None = None


def study_id(seed: int, index: int) -> str:
    return f"phantom_{seed}_{index:03d}"


def _rng(seed: int, index: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index, stream, *extra])))


@dataclass(frozen=True)
class ScanGeometry:
    """A forced scan geometry for the `full` preset: in-plane and slice spacing (mm) and the slice count, for
    benchmarks that need set sizes (512 x 512 x n_slices)."""

    in_plane_mm: float
    slice_mm: float
    n_slices: int


def plan(seed: int, index: int, phase: str | None = None, orientation: str | None = None,
         geometry: ScanGeometry | None = None) -> tuple[Anatomy, Acquisition, np.ndarray]:
    """The study's anatomy, scan and base HU per tissue: all independent of the preset. The phase, the
    orientation and the scan geometry can be forced (the anatomy stays the same)."""
    rng = _rng(seed, index, ANATOMY)
    body = sample_body(rng)
    acq = sample_acquisition(_rng(seed, index, ACQUISITION), body)
    if phase is not None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}: choose one of {', '.join(PHASES)}")
        acq = replace(acq, phase=phase)
    if orientation is not None:
        acq = replace(acq, orientation=_check_orientation(orientation))
    if geometry is not None:
        acq = replace(acq, fov_mm=512 * geometry.in_plane_mm, slice_mm=geometry.slice_mm,
                      n_slices=geometry.n_slices)
    contrast_rng = _rng(seed, index, CONTRAST)
    fatty = bool(contrast_rng.uniform() < 0.15)
    lut = hu_table(acq.phase, contrast_rng, fatty)
    anatomy = sample_anatomy(rng, body, acq.phase, acq.noise_sd(acq.slice_mm), fatty, _rng(seed, index, PELVIS))
    for i, t in enumerate(anatomy.tumours):
        lut[TUMOUR_BASE + 3 * i : TUMOUR_BASE + 3 * i + 3] = tumour_hu(t, float(lut[Tissue.LIVER]))
    return anatomy, acq, lut


def _check_orientation(code: str) -> str:
    """An orientation code names one direction of each axis pair (L/R, A/P, I/S), like RAS or LPS."""
    code = code.upper()
    axis_of = {"L": "LR", "R": "LR", "A": "AP", "P": "AP", "I": "IS", "S": "IS"}
    pairs = sorted(axis_of.get(c, "?") for c in code)
    if pairs != ["AP", "IS", "LR"]:
        raise ValueError(f"not an orientation code: {code!r} (one of L/R, A/P and I/S each, such as RAS or LPS)")
    return code


def affine_lps_to_ras(grid: Grid, acq: Acquisition) -> np.ndarray:
    """The nibabel (RAS) affine of the canonical LPS-ordered arrays."""
    lps = np.eye(4)
    lps[:3, :3] = np.diag(grid.spacing)
    lps[:3, 3] = np.asarray(grid.origin) + np.asarray(acq.world_offset)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def orient(array: np.ndarray, affine: np.ndarray, code: str) -> tuple[np.ndarray, np.ndarray]:
    """Re-store an array in the axis order named by an orientation code; the affine follows."""
    start = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(tuple(code)))
    out = nib.orientations.apply_orientation(array, transform)
    return np.ascontiguousarray(out), affine @ nib.orientations.inv_ornt_aff(transform, array.shape)



def generate_study(seed: int, index: int, preset: str = "small", with_tissue: bool = False,
                   phase: str | None = None, orientation: str | None = None,
                   geometry: ScanGeometry | None = None) -> Study:
    anatomy, acq, lut = plan(seed, index, phase, orientation, geometry)
    grid = grid_for(acq, preset)
    noise = _rng(seed, index, NOISE, len(preset))  # presets have names of different lengths: their own noise
    out = render(anatomy, acq, grid, lut, noise, with_tissue)
    affine = affine_lps_to_ras(grid, acq)
    image, final_affine = orient(out.image, affine, acq.orientation)
    label, _ = orient(out.label, affine, acq.orientation)
    tissue = None
    if out.tissue is not None:
        tissue = nifti_image(orient(out.tissue, affine, acq.orientation)[0], final_affine)

    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    liver_hu = float(lut[Tissue.LIVER])
    tumours = []
    for i, t in enumerate(anatomy.tumours):
        d = t.describe()
        d["volume_ml"] = round(float(out.tissue_ml[TUMOUR_BASE + 3 * i : TUMOUR_BASE + 3 * i + 3].sum()), 3)
        d["hu"] = round(liver_hu + t.contrast_hu, 1)
        d["cnr"] = round(abs(t.contrast_hu) / grid.noise_sd, 2)
        tumours.append(d)
    body = anatomy.body
    params = {
        "id": study_id(seed, index),
        "generator": {"name": "lib.data.phantoms", "version": GENERATOR_VERSION},
        "seed": seed,
        "index": index,
        "preset": preset,
        "phase": acq.phase,
        "shape": list(image.shape),
        "spacing_mm": [float(v) for v in nib.affines.voxel_sizes(final_affine)],
        "orientation": "".join(nib.aff2axcodes(final_affine)),
        "affine": np.round(final_affine, 6).tolist(),
        "slice_thickness_mm": grid.spacing[2],
        "field_of_view_mm": acq.fov_mm,
        "noise_sd_hu": round(grid.noise_sd, 2),
        "pad_value": acq.pad_value,
        "labels": LABEL_NAMES,
        "patient": {
            "body_width_mm": round(2 * body.skin.a, 1),
            "body_depth_mm": round(body.skin.b_ant + body.skin.b_post, 1),
            "fatty_liver": anatomy.fatty_liver,
            "gallbladder": anatomy.liver.gallbladder is not None,
        },
        "hu": {t.name.lower(): round(float(lut[t]), 1) for t in Tissue},
        "liver_volume_ml": round(float(out.tissue_ml[list(LIVER_TISSUES)].sum()), 2),
        "label_liver_ml": round(float((out.label == 1).sum()) * voxel_ml, 2),
        "label_tumour_ml": round(float((out.label == 2).sum()) * voxel_ml, 2),
        "tumour_count": len(tumours),
        "tumours": tumours,
    }
    return Study(params["id"], nifti_image(image, final_affine), nifti_image(label, final_affine), params, tissue)


def tumours_in_world(seed: int, index: int) -> list[dict]:
    """A study's tumours as its JSON describes them, each with its centre in world (RAS) millimetres: where it
    lies in the image, whatever the preset, the grid or the storage order."""
    anatomy, acq, _ = plan(seed, index)
    out = []
    for t in anatomy.tumours:
        lps = np.asarray(t.centre_mm) + np.asarray(acq.world_offset)
        out.append({**t.describe(), "centre_ras_mm": [float(-lps[0]), float(-lps[1]), float(lps[2])]})
    return out


def params_beside(image: Path) -> Path:
    """Where a study's parameters lie for its image, as study_paths puts them: its JSON beside it."""
    return study_paths(image.parent, image.name.removesuffix(".nii.gz"))["params"]


def known_tumours(image: Path) -> list[dict] | None:
    """The tumours of a phantom written by write_study (its JSON beside the image), None for any other study."""
    try:
        meta = json.loads(params_beside(Path(image)).read_text())
        generator = meta["generator"]["name"]
        seed, index = int(meta["seed"]), int(meta["index"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return tumours_in_world(seed, index) if generator == "lib.data.phantoms" else None


def study_paths(out_dir: Path, sid: str) -> dict[str, Path]:
    """Where a study's files go: the image and its parameters side by side, the ground truth in truth/."""
    return {
        "image": out_dir / f"{sid}.nii.gz",
        "params": out_dir / f"{sid}.json",
        "label": out_dir / "truth" / f"{sid}.nii.gz",
        "tissue": out_dir / "tissues" / f"{sid}.nii.gz",
    }


def write_study(study: Study, out_dir: Path) -> dict[str, Path]:
    """Write label, parameters, then the image last: a study whose image exists is complete."""
    paths = study_paths(out_dir, study.id)
    save_nifti(study.label, paths["label"])
    if study.tissue is not None:
        save_nifti(study.tissue, paths["tissue"])
    save_json(study.params, paths["params"])
    save_nifti(study.image, paths["image"])
    return paths
