"""One-off experiment (run R1): a second reader of lesion candidates. Rules: rules_reader.md beside this file.
Run from the repository's root with its .venv, with run L1's train.py and evaluate.py and run L2's weights beside
this file (`git show f796d28:apps/liver_tumor/pretrained/lesion_net_candidate/{train.py,evaluate.py,lesion_net_l2.pt}`).

  reader.py extract OUT DIR...      shipped model + L2 on each labelled study; candidates, their measurements
  reader.py fit TRAIN_OUT           the reader and its operating point (out-of-fold on TRAIN_OUT only)
  reader.py evaluate TRAIN_OUT OUT DIR...   shipped, union, union through the reader (evaluate()/summarise())
"""
import json
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluate import lesion_probability  # noqa: E402
from train import network  # noqa: E402

from lib.data.labelled import labelled_studies  # noqa: E402
from lib.data.phantoms.study import known_tumours  # noqa: E402
from lib.metrics.evaluate import evaluate, summarise  # noqa: E402

torch.set_num_threads(2)
L2 = HERE / "lesion_net_l2.pt"
MIN_ML, THRESHOLD = 0.25, 0.5
FEATURES = ("log_ml", "p_max", "p_mean", "shipped_frac", "hu_mean", "hu_sd", "ring_hu", "ring_sd", "contrast",
            "abs_contrast", "cnr", "elongation", "extent", "edge_frac", "liver_hu")


def candidates(shipped: np.ndarray, prob: np.ndarray, voxel_ml: float) -> np.ndarray:
    """Components of the union (as run L2's evaluation makes it) of >= MIN_ML, numbered from 1."""
    near = ndimage.binary_dilation(shipped > 0, iterations=2)
    tumour = ((prob >= THRESHOLD) & near) | (shipped == 2)
    parts, n = ndimage.label(tumour)
    sizes = np.bincount(parts.ravel(), minlength=n + 1) * voxel_ml
    keep = np.flatnonzero(sizes >= MIN_ML)
    keep = keep[keep > 0]
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, len(keep) + 1)
    return lut[parts]


def measure(image: np.ndarray, shipped: np.ndarray, prob: np.ndarray, comps: np.ndarray, spacing: np.ndarray,
            truth: np.ndarray | None) -> list[dict]:
    """The rule's measurements of each candidate (and, with truth, whether it is true and its lesion's size)."""
    whole = shipped > 0
    liver = (shipped == 1) & (comps == 0)
    liver_hu = float(np.median(image[liver])) if liver.any() else 0.0
    inside = ndimage.distance_transform_edt(whole, sampling=spacing)
    vml = float(np.prod(spacing)) / 1000
    if truth is not None:
        lesions, _ = ndimage.label(truth == 2)
        lesion_ml = np.bincount(lesions.ravel()) * vml
    pad = np.ceil(8 / spacing).astype(int)
    rows = []
    for i, sl in enumerate(ndimage.find_objects(comps), start=1):
        box = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(sl, pad, comps.shape))
        comp = comps[box] == i
        dist = ndimage.distance_transform_edt(~comp, sampling=spacing)
        ring = (dist > 1) & (dist <= 6) & liver[box]
        hu = image[box][comp]
        ring_hu = image[box][ring] if ring.sum() >= 10 else image[liver] if liver.any() else hu
        xyz = np.argwhere(comp) * spacing
        ev = np.sort(np.linalg.eigvalsh(np.cov(xyz.T) if len(xyz) > 3 else np.eye(3)))
        ext = np.array([s.stop - s.start for s in sl]).prod()
        contrast = float(hu.mean() - np.median(ring_hu))
        row = {"log_ml": float(np.log10(comp.sum() * vml)), "p_max": float(prob[box][comp].max()),
               "p_mean": float(prob[box][comp].mean()), "shipped_frac": float((shipped[box][comp] == 2).mean()),
               "hu_mean": float(hu.mean()), "hu_sd": float(hu.std()), "ring_hu": float(np.median(ring_hu)),
               "ring_sd": float(ring_hu.std()), "contrast": contrast, "abs_contrast": abs(contrast),
               "cnr": abs(contrast) / max(float(ring_hu.std()), 1.0),
               "elongation": float(np.sqrt(ev[-1] / max(ev[0], 0.25))), "extent": float(comp.sum() / ext),
               "edge_frac": float((inside[box][comp] <= 3).mean()), "liver_hu": liver_hu, "id": i}
        if truth is not None:
            touched = np.unique(lesions[box][comp])
            touched = touched[touched > 0]
            row["true"] = bool(len(touched))
            row["lesion_mm"] = float(max(((6 * lesion_ml[t] * 1000 / np.pi) ** (1 / 3) for t in touched), default=0))
        rows.append(row)
    return rows


def extract(out: Path, dirs: list[Path]) -> None:
    from lib.configs.liver_tumor import LiverTumor
    out.mkdir(parents=True, exist_ok=True)
    net = network()
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in torch.load(L2, map_location="cpu").items()})
    net.eval()
    tmp = Path(tempfile.mkdtemp())
    config = LiverTumor()
    config.init("liver_tumor", str(tmp / "m"), {"pyliverlesionseg_path": "none"}, None)
    task = config.infer()
    for sid, image, truth in [c for d in dirs for c in labelled_studies(d)]:
        if (out / sid / "cands.json").exists():
            continue
        t0 = time.time()
        (out / sid).mkdir(exist_ok=True)
        path, _ = task({"image": str(image)})
        shutil.move(path, out / sid / "shipped.nii.gz")
        lab = nib.load(out / sid / "shipped.nii.gz")
        shipped = np.asarray(lab.dataobj).astype(np.uint8)
        prob = lesion_probability(str(image), shipped > 0, lab.affine, net)
        img = nib.load(image)
        assert img.shape[:3] == shipped.shape and np.allclose(img.affine, lab.affine, atol=1e-3)
        spacing = np.linalg.norm(lab.affine[:3, :3], axis=0)
        comps = candidates(shipped, prob, float(np.prod(spacing)) / 1000)
        rows = measure(np.asarray(img.dataobj, np.float32), shipped, prob, comps, spacing,
                       np.asarray(nib.load(truth).dataobj).astype(np.uint8))
        nib.save(nib.Nifti1Image(comps.astype(np.int16), lab.affine), out / sid / "cands.nii.gz")
        (out / sid / "cands.json").write_text(json.dumps(rows))
        print(f"{sid}: {len(rows)} candidates, {sum(r['true'] for r in rows)} true, {time.time() - t0:.0f} s",
              flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


def table(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = [(s.name, r) for s in sorted(out.iterdir()) if (s / "cands.json").exists()
            for r in json.loads((s / "cands.json").read_text())]
    x = np.array([[r[f] for f in FEATURES] for _, r in rows])
    y = np.array([r["true"] for _, r in rows])
    big = np.array([r["lesion_mm"] >= 10 for _, r in rows])
    groups = np.array([s for s, _ in rows])
    return x, y, big, groups


def reader():
    from sklearn.ensemble import GradientBoostingClassifier
    return GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8, random_state=0)


def fit(train: Path) -> None:
    from sklearn.model_selection import GroupKFold
    x, y, big, groups = table(train)
    oof = np.zeros(len(y))
    for a, b in GroupKFold(5).split(x, y, groups):
        oof[b] = reader().fit(x[a], y[a]).predict_proba(x[b])[:, 1]
    scores = np.sort(oof[y & big])
    threshold = float(scores[int(np.floor(0.1 * len(scores)))])  # keeps >= 90% of the true candidates >= 10 mm
    model = reader().fit(x, y)
    keep = oof >= threshold
    summary = {"candidates": int(len(y)), "true": int(y.sum()), "true_10mm": int((y & big).sum()),
               "studies": int(len(set(groups))), "threshold": threshold,
               "oof_kept_true": int((keep & y).sum()), "oof_kept_true_10mm": int((keep & y & big).sum()),
               "oof_kept_false": int((keep & ~y).sum()),
               "importance": dict(zip(FEATURES, np.round(model.feature_importances_, 3).tolist()))}
    print(json.dumps(summary, indent=1))
    (train / "reader.pkl").write_bytes(pickle.dumps((model, threshold)))
    (train / "fit.json").write_text(json.dumps(summary, indent=1))


def evaluate_all(train: Path, out: Path, dirs: list[Path]) -> None:
    model, threshold = pickle.loads((train / "reader.pkl").read_bytes())
    cases = [c for d in dirs for c in labelled_studies(d)]
    tmp = Path(tempfile.mkdtemp())
    score = {}
    for sid, _, _ in cases:
        rows = json.loads((out / sid / "cands.json").read_text())
        x = np.array([[r[f] for f in FEATURES] for r in rows]).reshape(-1, len(FEATURES))
        score[sid] = dict(zip([r["id"] for r in rows], model.predict_proba(x)[:, 1] if len(rows) else []))

    def variant(kept):
        def infer(request):
            sid = Path(request["image"]).name.removesuffix(".nii.gz")
            lab = nib.load(out / sid / "shipped.nii.gz")
            shipped = np.asarray(lab.dataobj)
            comps = np.asarray(nib.load(out / sid / "cands.nii.gz").dataobj)
            data = (shipped > 0).astype(np.uint8)
            data[np.isin(comps, [i for i in score[sid] if kept(sid, i)])] = 2
            path = tmp / f"{sid}_{time.time_ns()}.nii.gz"
            nib.save(nib.Nifti1Image(data, lab.affine), path)
            return str(path), {}
        return infer

    def shipped(request):
        sid = Path(request["image"]).name.removesuffix(".nii.gz")
        path = tmp / f"{sid}_{time.time_ns()}.nii.gz"
        shutil.copy(out / sid / "shipped.nii.gz", path)
        return str(path), {}

    results = {"shipped": summarise(evaluate(shipped, cases, known=known_tumours)),
               "union": summarise(evaluate(variant(lambda s, i: True), cases, known=known_tumours)),
               f"reader_{threshold:.3f}": summarise(evaluate(variant(lambda s, i: score[s][i] >= threshold), cases,
                                                             known=known_tumours))}
    (out / "scores.json").write_text(json.dumps({s: {int(i): float(v) for i, v in d.items()} for s, d in score.items()}))
    import os
    for t in [float(v) for v in os.environ.get("READER_T", "0.1,0.2,0.3,0.4,0.5,0.6").split(",")]:
        results[f"sweep_{t}"] = summarise(evaluate(variant(lambda s, i, t=t: score[s][i] >= t), cases,
                                                   known=known_tumours))
    (out / "eval.json").write_text(json.dumps(results, indent=1))
    keys = ("liver_dice", "tumour_global_dice", "visible_10mm", "lesions_found", "false_positives_per_study")
    for name, r in results.items():
        print(name, json.dumps({k: r.get(k) for k in keys}))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "extract":
        extract(Path(sys.argv[2]), [Path(d) for d in sys.argv[3:]])
    elif mode == "fit":
        fit(Path(sys.argv[2]))
    else:
        evaluate_all(Path(sys.argv[2]), Path(sys.argv[3]), [Path(d) for d in sys.argv[4:]])
