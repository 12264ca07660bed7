"""Medical Segmentation Decathlon Task03_Liver: download, check, split, read in place, or import into a MONAI
Label datastore as studies with final labels."""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from .atomic import copy_file, save_json, save_nifti
from .sample_datastore import final_label_path

TASK = "Task03_Liver"
SPLITS = {"seed": "task03_liver_seed.json"}
SUBSETS = ("train", "validation", "test")


class DecathlonError(RuntimeError):
    """A Task03 folder or request that cannot be used; the message names the problem."""


def resource() -> tuple[str, str]:
    """The download address and md5 of Task03_Liver, as MONAI (and `monailabel datasets`) has them."""
    from monai.apps.datasets import DecathlonDataset

    return DecathlonDataset.resource[TASK], DecathlonDataset.md5[TASK]


def download(out_dir: Path, url: str | None = None, md5: str | None = None) -> Path:
    """Download and unpack Task03_Liver into out_dir/Task03_Liver with MONAI's own downloader (checks the md5)."""
    task_dir = out_dir / TASK
    if task_dir.exists():  # said before MONAI loads (about 10 s)
        raise DecathlonError(f"{task_dir} already exists: remove it or choose another --out")
    from monai.apps.utils import download_and_extract

    default_url, default_md5 = resource()
    if url is None:
        url, md5 = default_url, md5 or default_md5
    out_dir.mkdir(parents=True, exist_ok=True)
    tar = out_dir / f"{TASK}.tar"
    try:
        download_and_extract(url, str(tar), str(out_dir), md5, "md5")
    except (RuntimeError, OSError, ValueError) as e:
        raise DecathlonError(f"could not download {url}: {str(e).splitlines()[0]}") from e
    finally:
        tar.unlink(missing_ok=True)
    for junk in pathlib.Path(task_dir).rglob("._*"):  # macOS resource forks shipped in the archive
        junk.unlink()
    check(task_dir)
    return task_dir


@dataclass(frozen=True)
class Case:
    id: str
    image: Path
    label: Path | None


def check(task_dir: Path) -> dict:
    """Read and validate dataset.json; every file it names must exist."""
    meta_path = task_dir / "dataset.json"
    if not task_dir.is_dir():
        raise DecathlonError(f"{task_dir} is not a folder")
    if not meta_path.exists():
        raise DecathlonError(f"{task_dir} has no dataset.json: not a Decathlon task folder")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise DecathlonError(f"{meta_path} is not valid JSON: {e}") from e
    if not isinstance(meta.get("training"), list) or not meta["training"]:
        raise DecathlonError(f"{meta_path} lists no training cases")
    for entry in meta["training"]:
        for key in ("image", "label"):
            if not isinstance(entry, dict) or key not in entry:
                raise DecathlonError(f"{meta_path}: a training entry has no {key!r}: {entry}")
            if not (task_dir / entry[key]).exists():
                raise DecathlonError(f"{meta_path} names {entry[key]}, which does not exist")
    return meta


def _case_id(path: str) -> str:
    return Path(path).name.removesuffix(".gz").removesuffix(".nii")


def load_split(name: str) -> dict[str, list[str]]:
    if name not in SPLITS:
        raise DecathlonError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
    return json.loads(resources.files("lib.data").joinpath("splits", SPLITS[name]).read_text())


def cases(task_dir: Path, split: str | None = None, subset: str | None = None, unlabelled: bool = False
          ) -> list[Case]:
    """The labelled training cases (optionally one subset of a named split), plus the unlabelled test images."""
    meta = check(task_dir)
    found = [Case(_case_id(e["image"]), task_dir / e["image"], task_dir / e["label"]) for e in meta["training"]]
    if split:
        if subset not in SUBSETS:
            raise DecathlonError(f"a split needs a subset: one of {', '.join(SUBSETS)}")
        wanted = set(load_split(split)[subset])
        found = [c for c in found if c.id in wanted]
    if unlabelled:
        found += [Case(_case_id(p), task_dir / p, None) for p in meta.get("test", [])]
    return found


def datalist(task_dir: Path, split: str | None = None, subset: str | None = None) -> list[dict[str, str]]:
    """Labelled cases as MONAI data dicts, read where they are (an extra training source)."""
    return [{"image": str(c.image), "label": str(c.label)} for c in cases(task_dir, split, subset)]


def _check_pair(case: Case) -> None:
    try:
        img = nib.load(str(case.image))
        lab = nib.load(str(case.label))
    except Exception as e:  # nibabel raises many kinds for unreadable files
        raise DecathlonError(f"{case.id}: cannot read: {e}") from e
    if img.shape[:3] != lab.shape[:3] or not np.allclose(img.affine, lab.affine, atol=1e-3):
        raise DecathlonError(f"{case.id}: the label's grid {lab.shape} does not match the image's {img.shape}")


def import_into(task_dir: Path, datastore: Path, split: str | None = None, subset: str | None = None,
                unlabelled: bool = False, progress: bool = True) -> list[str]:
    """Copy cases into a MONAI Label local datastore, labels as final; every pair is checked before anything is
    written, each file lands whole (label first, image last), and studies and labels already there are kept
    (an annotator may have corrected them)."""
    selected = cases(task_dir, split, subset, unlabelled)
    if not selected:
        raise DecathlonError(f"no cases in {task_dir} for split {split!r} subset {subset!r}")
    for c in selected:
        if c.label is not None:
            _check_pair(c)
        existing = datastore / c.image.name
        if existing.exists() and existing.stat().st_size != c.image.stat().st_size:
            raise DecathlonError(f"{datastore} already holds a different study named {c.id}")
    datastore.mkdir(parents=True, exist_ok=True)
    for c in tqdm(selected, unit="case", desc="import", disable=not progress):
        if c.label is not None and not final_label_path(datastore, c.id).exists():
            copy_file(c.label, final_label_path(datastore, c.id))
        if not (datastore / c.image.name).exists():
            copy_file(c.image, datastore / c.image.name)
    from monailabel.datastore.local import LocalDatastore  # slow to import: only once there is work for it

    LocalDatastore(str(datastore), extensions=("*.nii.gz", "*.nii"))  # reconciles and writes its index
    return [c.id for c in selected]


def make_standin(out_dir: Path, count: int, seed: int, preset: str = "small", test_count: int = 2) -> Path:
    """A Task03_Liver folder with the real layout and dataset.json, made of phantoms (for tests and demos)."""
    from .phantoms import generate_study

    task_dir = out_dir / TASK
    training, test = [], []
    for i in range(count + test_count):
        study = generate_study(seed, i, preset)
        if i < count:
            name = f"liver_{i}.nii.gz"
            save_nifti(study.label, task_dir / "labelsTr" / name)
            save_nifti(study.image, task_dir / "imagesTr" / name)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            name = f"liver_{131 + i - count}.nii.gz"
            save_nifti(study.image, task_dir / "imagesTs" / name)
            test.append(f"./imagesTs/{name}")
    save_json({
        "name": "Liver", "description": "Liver and tumour segmentation (stand-in made of synthetic phantoms)",
        "reference": "phantoms of lib.data.phantoms", "licence": "CC-BY-SA 4.0", "tensorImageSize": "3D",
        "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "numTraining": len(training), "numTest": len(test), "training": training, "test": test,
    }, task_dir / "dataset.json")
    return task_dir
