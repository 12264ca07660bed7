"""The committed sample datastore: a dozen phantom studies, a few with final labels, that MONAI Label opens as a
local datastore (`monailabel start_server --app apps/liver_tumor --studies sample-data`)."""

from __future__ import annotations

from pathlib import Path

from .atomic import copy_file
from .phantoms.batch import make_phantoms
from .phantoms.study import study_id, study_paths

SEED = 2026
COUNT = 12
LABELLED = (0, 1, 2, 3)  # studies that come with a final label, so that training can start at once
PRESET = "medium"


def final_label_path(datastore: Path, image_id: str) -> Path:
    """Where MONAI Label's local datastore keeps an image's final label."""
    return datastore / "labels" / "final" / f"{image_id}.nii.gz"


def make_sample_datastore(out: Path, jobs: int = 1, progress: bool = True) -> list[str]:
    """Generate the studies (the phantom layout: image and parameters side by side, ground truth in truth/)
    and give the LABELLED ones their ground truth as final label."""
    make_phantoms(out, COUNT, SEED, PRESET, jobs=jobs, progress=progress)
    ids = [study_id(SEED, i) for i in range(COUNT)]
    for i in LABELLED:
        copy_file(study_paths(out, ids[i])["label"], final_label_path(out, ids[i]))
    return ids
