"""Run S1: each labelled study through the app (bench accuracy's set-up) with the second reader at threshold 0, so
that every candidate is kept, and S1's lesion network in the reader's folder. Per study into OUT/<id>/: the label
(all.nii.gz), the candidates on the study's grid (parts.nii.gz) and their measurements with the truth (cands.json),
exactly as lib/reader makes them in /infer. usage: extract.py FOLDER OUT DIR..."""
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.networks.nets import UNet
from scipy import ndimage

sys.path.insert(0, "/work/main")
import lib.reader.lesion_network as ln  # noqa: E402
import lib.reader.transform as rt  # noqa: E402
from lib.reader.candidates import FEATURES  # noqa: E402

ln.build_lesion_unet = lambda: UNet(3, 1, 2, (8, 16, 32, 64, 128), (2, 2, 2, 2), num_res_units=2, norm="batch")
cap = {}
_prob, _cands, _meas = rt.lesion_probability, rt.candidates, rt.measurements


def prob(ct, region, net, dtype, image=None):
    cap["affine"], cap["shape"] = np.asarray(ct.affine, float), tuple(ct.shape)
    return _prob(ct, region, net, dtype, image)


def cands(label, p, spacing):
    cap["parts"] = _cands(label, p, spacing)
    return cap["parts"]


def meas(*args):
    cap["x"] = _meas(*args)
    return cap["x"]


rt.lesion_probability, rt.candidates, rt.measurements = prob, cands, meas


def main() -> None:
    from lib.configs.liver_tumor import LiverTumor
    from lib.data.labelled import labelled_studies
    folder, out, dirs = Path(sys.argv[1]), Path(sys.argv[2]), [Path(d) for d in sys.argv[3:]]
    out.mkdir(parents=True, exist_ok=True)
    config = LiverTumor()
    with tempfile.TemporaryDirectory() as model_dir:
        config.init("liver_tumor", model_dir, {"second_reader_path": str(folder)}, None)
        task = config.infer()
        for sid, image, truth in [c for d in dirs for c in labelled_studies(d)]:
            if (out / sid / "cands.json").exists():
                continue
            t0 = time.time()
            cap.clear()
            path, result = task({"image": str(image), "second_reader": True, "second_reader_threshold": 0.0})
            seconds = time.time() - t0
            (out / sid).mkdir(exist_ok=True)
            lab = nib.load(path)
            label = np.asarray(lab.dataobj).astype(np.uint8)
            Path(path).unlink()
            img = nib.load(image)
            assert label.shape == img.shape[:3] and np.allclose(lab.affine, img.affine, atol=1e-3)
            truth_a = np.asarray(nib.load(truth).dataobj).astype(np.uint8)
            parts = np.zeros(label.shape, np.int16)
            if "parts" in cap:
                rel = np.linalg.inv(img.affine) @ cap["affine"]
                assert np.allclose(rel[:3, :3], np.eye(3), atol=1e-4), rel
                t = np.round(rel[:3, 3]).astype(int)
                assert np.allclose(rel[:3, 3], t, atol=1e-3) and (t >= 0).all(), rel
                box = tuple(slice(a, a + s) for a, s in zip(t, cap["shape"]))
                parts[box] = cap["parts"]
            x = cap.get("x", np.zeros((0, len(FEATURES))))
            assert len(x) == parts.max(), (len(x), parts.max())
            lesions, _ = ndimage.label(truth_a == 2)
            vml = float(np.prod(np.linalg.norm(img.affine[:3, :3], axis=0))) / 1000
            lesion_ml = np.bincount(lesions.ravel()) * vml
            rows = []
            for i in range(1, len(x) + 1):
                touched = np.unique(lesions[parts == i])
                touched = touched[touched > 0]
                rows.append({**dict(zip(FEATURES, map(float, x[i - 1]))), "id": i, "true": bool(len(touched)),
                             "lesion_mm": float(max(((6 * lesion_ml[k] * 1000 / np.pi) ** (1 / 3) for k in touched),
                                                    default=0))})
            nib.save(nib.Nifti1Image(label, img.affine), out / sid / "all.nii.gz")
            nib.save(nib.Nifti1Image(parts, img.affine), out / sid / "parts.nii.gz")
            (out / sid / "cands.json").write_text(json.dumps({"rows": rows, "seconds": seconds,
                                                              "second_reader": result.get("second_reader")}))
            print(f"{sid}: {len(rows)} candidates, {sum(r['true'] for r in rows)} true, {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
