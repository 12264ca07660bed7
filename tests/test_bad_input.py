"""The bad-input catalogue, over the REST API of a real server: each kind of bad input gets a 4xx that names the
problem, the server keeps serving, and the datastore stays byte for byte as it was."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests

from lib.settings import DEMO_CHECKPOINT

from .conftest import ROOT, served

IMAGE = "phantom_2026_006"  # unlabelled in sample-data
MAX_IMAGE_MB = 8
AFFINE = np.diag([2.0, 2.0, 4.0, 1.0])


def nifti(array: np.ndarray, affine: np.ndarray = AFFINE) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, affine).to_bytes())


def ct(shape=(40, 40, 12), dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 300, shape).astype(dtype)


def binary_nifti() -> bytes:
    """A NIfTI volume of NIfTI's 1-bit "binary" type (datatype 1), which is how a bool image would be stored."""
    header = nib.Nifti1Image(ct((40, 40, 12), np.uint8), AFFINE).to_bytes()
    raw = bytearray(header)
    raw[70:72], raw[72:74] = np.int16(1).tobytes(), np.int16(1).tobytes()  # datatype, bitpix
    return gzip.compress(bytes(raw))


def _with(value, at=(0, 0, 0)):
    a = ct().astype(np.float32)
    a[at] = value
    return a


GOOD_SHAPE = nib.load(ROOT / "sample-data" / f"{IMAGE}.nii.gz")
GOOD_LABEL = np.zeros(GOOD_SHAPE.shape, np.uint8)
STRETCHED = GOOD_SHAPE.affine @ np.diag([1.0, 1.0, 2.0, 1.0])

# name: (method, path, files or None, data or None, expected status, words the answer must contain)
IMAGE_UPLOAD = "/datastore/?image=upload_test"
CATALOGUE = {
    "not an image": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", b"hello, not an image")}, None, 422,
                     "not a readable NIfTI"),
    "empty .nii.gz": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", b"")}, None, 422, "empty"),
    "truncated .nii.gz": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(ct())[:2000])}, None, 422,
                          "not a readable NIfTI"),
    "not NIfTI at all (PNG)": ("PUT", IMAGE_UPLOAD, {"file": ("x.png", b"\x89PNG\r\n\x1a\n")}, None, 422,
                               "must be NIfTI"),
    "NaN voxels": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(_with(np.nan)))}, None, 422, "NaN"),
    "Inf voxels": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(_with(np.inf)))}, None, 422, "infinite"),
    "all-constant image": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(np.full((40, 40, 12), 40, np.int16)))},
                           None, 422, "constant"),
    "2D image": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(ct((40, 40))))}, None, 422, "2D"),
    "4D image": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(ct((40, 40, 12, 3))))}, None, 422, "4D"),
    "5D image": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(ct((40, 40, 12, 1, 2))))}, None, 422, "5D"),
    "bool image (NIfTI's binary type)": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", binary_nifti())}, None, 422,
                                         "not a readable NIfTI"),
    "a mask sent as the image": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti((ct() > 0).astype(np.uint8)))},
                                 None, 422, "a mask"),
    "complex image": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(ct().astype(np.complex64)))}, None, 422,
                      "complex"),
    "tiny image (10 x 10 x 3)": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(ct((10, 10, 3))))}, None, 422,
                                 "too small"),
    "over the size limit": ("PUT", IMAGE_UPLOAD, {"file": ("x.nii.gz", nifti(np.zeros((256, 256, 80), np.int16)))},
                            None, 422, "over this server's limit of 8 MB"),
    "label with values outside 0/1/2": ("PUT", f"/datastore/label?image={IMAGE}&tag=final",
                                        {"label": ("l.nii.gz", nifti(GOOD_LABEL + 5, GOOD_SHAPE.affine))}, None, 422,
                                        "values [5]"),
    "label of another shape": ("PUT", f"/datastore/label?image={IMAGE}&tag=final",
                               {"label": ("l.nii.gz", nifti(GOOD_LABEL[:-2], GOOD_SHAPE.affine))}, None, 422,
                               "shape"),
    "label with another affine": ("PUT", f"/datastore/label?image={IMAGE}&tag=final",
                                  {"label": ("l.nii.gz", nifti(GOOD_LABEL, STRETCHED))}, None, 422,
                                  "affine"),
    "label for an unknown image": ("PUT", "/datastore/label?image=no_such_study&tag=final",
                                   {"label": ("l.nii.gz", nifti(GOOD_LABEL, GOOD_SHAPE.affine))}, None, 404,
                                   "no_such_study"),
    "label tag with a separator": ("PUT", f"/datastore/label?image={IMAGE}&tag=..%2Ffinal",
                                   {"label": ("l.nii.gz", nifti(GOOD_LABEL, GOOD_SHAPE.affine))}, None, 422,
                                   "invalid label tag"),
    "id with a path separator": ("POST", "/infer/liver_tumor?image=a%2Fb", None, None, 422, "invalid image id"),
    "id '..'": ("POST", "/infer/liver_tumor?image=..", None, None, 422, "invalid image id"),
    "id climbing out": ("POST", "/infer/liver_tumor?image=..%2F..%2Fetc%2Fpasswd", None, None, 422,
                        "invalid image id"),
    "absolute path as id": ("POST", "/infer/liver_tumor?image=%2Fetc%2Fpasswd", None, None, 422,
                            "invalid image id"),
    "NUL byte in id": ("POST", "/infer/liver_tumor?image=phantom%00x", None, None, 422, "invalid image id"),
    "very long id": ("POST", "/infer/liver_tumor?image=" + "a" * 300, None, None, 422, "invalid image id"),
    "upload with a path as its id": ("PUT", "/datastore/?image=..%2Fescape", {"file": ("x.nii.gz", nifti(ct()))},
                                     None, 422, "invalid image id"),
    "image download climbing out": ("GET", "/datastore/image?image=..%2F..%2F..%2Fetc%2Fpasswd", None, None, 404,
                                    "not found"),
    "label download with a climbing tag": ("GET", "/datastore/label?label=phantom_2026_000&tag=..%2F..%2Fimages",
                                           None, None, 404, "not found"),
    "a model upload that is not a model": ("PUT", "/model/liver_tumor", {"file": ("m.pt", b"not weights")}, None,
                                           422, "is not a liver_tumor model"),
    "unknown model": ("POST", f"/infer/spleen?image={IMAGE}", None, None, 404, "no model 'spleen'"),
    "unknown strategy": ("POST", "/activelearning/no_such_strategy", None, None, 404, "no strategy"),
    "unknown image": ("POST", "/infer/liver_tumor?image=no_such_study", None, None, 404, "no image"),
    "malformed JSON params (infer)": ("POST", f"/infer/liver_tumor?image={IMAGE}", None, {"params": "{not json"},
                                      422, "malformed JSON"),
    "malformed JSON params (label)": ("PUT", f"/datastore/label?image={IMAGE}&tag=final",
                                      {"label": ("l.nii.gz", nifti(GOOD_LABEL, GOOD_SHAPE.affine))},
                                      {"params": "{\"label_info\": ["}, 422, "malformed JSON"),
    "unknown segment in label_info": ("PUT", f"/datastore/label?image={IMAGE}&tag=final",
                                      {"label": ("l.nii.gz", nifti(GOOD_LABEL, GOOD_SHAPE.affine))},
                                      {"params": json.dumps({"label_info": [{"name": "kidney", "idx": 1}]})}, 422,
                                      "kidney"),
}


def datastore_digest(folder: Path) -> dict[str, str]:
    """Every file of the datastore, its index included, by content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


ANSWERS: dict[str, dict] = {}  # kept in runs/bad-input.json: the catalogue with each answer, for docs/reliability.md


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # inference at 3 mm, the sample studies' own spacing: quick, and what is checked here is not accuracy
    conf = {"pretrained_path": str(DEMO_CHECKPOINT), "max_image_mb": str(MAX_IMAGE_MB), "spacing": "3"}
    root = tmp_path_factory.mktemp("bad-input")
    (root / "tmp").mkdir()  # the server's temporary folder: uploads go there while they are checked
    with served(root, conf, env={"TMPDIR": str(root / "tmp")}) as (client, studies, app_dir):
        yield client._server_url.rstrip("/"), studies, app_dir
    (ROOT / "runs").mkdir(exist_ok=True)
    (ROOT / "runs" / "bad-input.json").write_text(json.dumps(ANSWERS, indent=1) + "\n")


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_input_is_refused_and_changes_nothing(server, case):
    url, studies, app_dir = server
    method, path, files, data, status, words = CATALOGUE[case]
    before, temporary = datastore_digest(studies), set((studies.parent / "tmp").iterdir())
    r = requests.request(method, url + path, files=files, data=data, timeout=300)
    ANSWERS[case] = {"request": f"{method} {path[:60]}", "status": r.status_code, "answer": r.text[:300]}
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert words.lower() in r.json()["detail"].lower(), r.json()
    assert requests.get(url + "/info/", timeout=60).status_code == 200  # still serving
    assert datastore_digest(studies) == before
    assert not (app_dir / "model" / "liver_tumor.pt").exists()  # nothing replaced the model in use
    left = [p.name for p in set((studies.parent / "tmp").iterdir()) - temporary]
    assert not left, f"refused uploads left in the server's temporary folder: {left}"


def test_a_model_upload_that_loads_replaces_the_model_in_use(server, tmp_path):
    url, _, app_dir = server
    r = requests.put(f"{url}/model/liver_tumor", files={"file": ("m.pt", DEMO_CHECKPOINT.read_bytes())}, timeout=60)
    assert r.status_code == 200, r.text
    assert (app_dir / "model" / "liver_tumor.pt").read_bytes() == DEMO_CHECKPOINT.read_bytes()
    assert requests.post(f"{url}/infer/liver_tumor?image={IMAGE}&output=json", timeout=300).status_code == 200


def test_mr_like_intensities_are_segmented_with_a_warning(server, tmp_path):
    """An MR-like volume (no air at -1000 HU) is not refused, but the result says it does not look like CT."""
    url, studies, _ = server
    image = nib.load(ROOT / "sample-data" / f"{IMAGE}.nii.gz")
    mr = ((np.asanyarray(image.dataobj).astype(np.float32) + 1024) * 1.5).astype(np.int16)
    r = requests.post(f"{url}/infer/liver_tumor?output=json",
                      files={"file": ("mr.nii.gz", nifti(mr, image.affine))}, timeout=300)
    assert r.status_code == 200, r.text[:300]
    warnings = r.json().get("warnings", [])
    assert len(warnings) == 1 and "MR" in warnings[0] and "-1000 HU" in warnings[0]
    plain = requests.post(f"{url}/infer/liver_tumor?image={IMAGE}&output=json", timeout=300)
    assert plain.status_code == 200 and "warnings" not in plain.json()
