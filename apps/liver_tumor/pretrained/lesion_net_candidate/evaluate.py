"""One-off: the shipped model alone against the shipped model's liver with the lesion network's tumours (replace and
union), on the same studies (run from the repository's root with its .venv), through evaluate()/summarise() as bench accuracy measures them."""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.transforms import Compose, LoadImaged
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from train import network  # noqa: E402

from lib.configs.liver_tumor import LiverTumor  # noqa: E402
from lib.data.labelled import labelled_studies  # noqa: E402
from lib.data.phantoms.study import known_tumours  # noqa: E402
from lib.metrics.evaluate import evaluate, summarise  # noqa: E402
from lib.transforms.denoise import SmoothNoisyd  # noqa: E402
from lib.transforms.preprocess import preprocessing  # noqa: E402

torch.set_num_threads(2)
WEIGHTS, OUT, DIRS = Path(sys.argv[1]), Path(sys.argv[2]), [Path(d) for d in sys.argv[3:]]
THRESHOLDS = (0.5,)  # the rule's; the sweep after it: (0.7, 0.9), union only
MIN_ML = 0.25


def lesion_probability(image_path: str, region: np.ndarray, affine0: np.ndarray, net) -> np.ndarray:
    """The lesion network's tumour probability on the study's grid, inside the bounding box of `region`."""
    t = Compose([LoadImaged(keys="image", image_only=True), *preprocessing((1.0, 1.0, 1.0)),
                 SmoothNoisyd("image", "result", 10.0, 1.0, (1.0, 1.0, 1.0))])
    d = t({"image": image_path})
    img = d["image"]
    a1 = np.asarray(img.affine, float)
    # the region's box on the 1 mm grid
    ijk0 = np.argwhere(region)
    if not len(ijk0):
        return np.zeros(region.shape, np.float32)
    lo0, hi0 = ijk0.min(0), ijk0.max(0)
    corners = np.array([[x, y, z, 1] for x in (lo0[0], hi0[0]) for y in (lo0[1], hi0[1]) for z in (lo0[2], hi0[2])])
    c1 = (np.linalg.inv(a1) @ affine0 @ corners.T)[:3].T
    shape1 = np.array(img.shape[1:])
    lo1 = np.clip(np.floor(c1.min(0)).astype(int) - 8, 0, shape1)
    hi1 = np.clip(np.ceil(c1.max(0)).astype(int) + 9, 0, shape1)
    sub = torch.as_tensor(img)[None, :, lo1[0]:hi1[0], lo1[1]:hi1[1], lo1[2]:hi1[2]].float()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = sliding_window_inference(sub, (96, 96, 96), 2, net, overlap=0.25, mode="gaussian")
    prob = logits.float().softmax(1)[0, 1].numpy()
    # back to the study's grid: each voxel of the region's box sampled trilinearly
    out = np.zeros(region.shape, np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo0, hi0)], indexing="ij"), -1).reshape(-1, 3)
    hom = np.c_[grid, np.ones(len(grid))]
    p1 = (np.linalg.inv(a1) @ affine0 @ hom.T)[:3] - lo1[:, None]
    vals = ndimage.map_coordinates(prob, p1, order=1, cval=0.0)
    out[tuple(grid.T)] = vals
    return out


def combined(app_label: np.ndarray, prob: np.ndarray, threshold: float, union: bool, voxel_ml: float) -> np.ndarray:
    whole = app_label > 0
    near = ndimage.binary_dilation(whole, iterations=2)
    tumour = (prob >= threshold) & near
    if union:
        tumour |= app_label == 2
    parts, n = ndimage.label(tumour)
    sizes = np.bincount(parts.ravel(), minlength=n + 1) * voxel_ml
    tumour &= sizes[parts] >= MIN_ML
    out = np.where(whole, 1, 0).astype(np.uint8)
    out[tumour] = 2
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    net = network()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu"))
    net.eval()
    cases = [c for d in DIRS for c in labelled_studies(d)]
    cache = {}
    tmp = Path(tempfile.mkdtemp())
    config = LiverTumor()
    config.init("liver_tumor", str(tmp / "m"), {"pyliverlesionseg_path": "none"}, None)
    task = config.infer()

    def shipped(request):
        path, result = task(request)
        kept = tmp / f"shipped_{Path(request['image']).name}"
        shutil.move(path, kept)
        cache[request["image"]] = (str(kept), result)
        copy = tmp / f"copy_{Path(request['image']).name}"
        shutil.copy(kept, copy)
        return str(copy), result

    results = {"shipped": summarise(evaluate(shipped, cases, known=known_tumours))}
    print(json.dumps({"shipped": results["shipped"]}), flush=True)
    probs = {}
    for image, (path, _) in cache.items():
        lab = nib.load(path)
        probs[image] = lesion_probability(image, np.asarray(lab.dataobj) > 0, lab.affine, net)
    for threshold in THRESHOLDS:
        for union in (False, True):
            name = f"{'union' if union else 'replace'}_{threshold}"

            def variant(request, threshold=threshold, union=union, name=name):
                path, result = cache[request["image"]]
                lab = nib.load(path)
                voxel_ml = abs(np.linalg.det(lab.affine[:3, :3])) / 1000
                data = combined(np.asarray(lab.dataobj), probs[request["image"]], threshold, union, voxel_ml)
                out = tmp / f"{name}_{Path(request['image']).name}"
                nib.save(nib.Nifti1Image(data, lab.affine), out)
                return str(out), result

            results[name] = summarise(evaluate(variant, cases, known=known_tumours))
            print(json.dumps({name: results[name]}), flush=True)
    (OUT / "eval.json").write_text(json.dumps(results, indent=1))
    keys = ("liver_dice", "tumour_global_dice", "visible_10mm", "lesions_found", "false_positives_per_study")
    for name, r in results.items():
        print(name, {k: r.get(k) for k in keys})


if __name__ == "__main__":
    main()
