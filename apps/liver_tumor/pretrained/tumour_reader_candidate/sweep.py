"""R2: the reader at each threshold over labelled studies (their shipped labels kept), measured as bench accuracy
measures. usage: sweep.py STUDIES LABELS READER.json OUT.json T1 T2 ..."""
import json, sys, tempfile
from pathlib import Path
import numpy as np, nibabel as nib
from nibabel.affines import voxel_sizes
sys.path.insert(0, "/work/main")
from lib.reader.candidates import candidates, measurements
from lib.reader.trees import Trees
from lib.metrics.dice import compare
from lib.metrics.lesions import lesion_detection
from lib.metrics.evaluate import summarise
from lib.data.phantoms.study import known_tumours
studies, labels, trees, out = Path(sys.argv[1]), Path(sys.argv[2]), Trees(Path(sys.argv[3])), Path(sys.argv[4])
thresholds = [None] + [float(t) for t in sys.argv[5:]]
rows = {str(t): [] for t in thresholds}
tmp = Path(tempfile.mkdtemp())
for lab_file in sorted(labels.glob("*.nii.gz")):
    sid = lab_file.name[:-7]
    image = studies / f"{sid}.nii.gz"
    img = nib.load(image); lab = nib.load(lab_file)
    truth_file = studies / "truth" / f"{sid}.nii.gz"
    truth = np.asanyarray(nib.load(truth_file).dataobj)
    label = np.asanyarray(lab.dataobj).astype(np.uint8)
    ct = np.asarray(img.dataobj, np.float32); sp = voxel_sizes(img.affine)
    zeros = np.zeros(label.shape, np.float32)
    parts = candidates(label, zeros, sp)
    score = trees.probability(measurements(ct, label, zeros, parts, sp))
    known = known_tumours(image)
    for t in thresholds:
        new = label.copy()
        if t is not None:  # as SecondReaderd: the liver as it was, tumour only the candidates kept
            new = (label > 0).astype(np.uint8)
            new[np.isin(parts, np.flatnonzero(score >= t) + 1)] = 2
        f = tmp / f"{sid}.nii.gz"
        nib.save(nib.Nifti1Image(new, lab.affine), f)
        lesions = lesion_detection(new, truth, lab.affine, known, ct if ct.shape == truth.shape else None)
        rows[str(t)].append({"id": sid, **compare(f, truth_file), "seconds": 0.0, "lesions": lesions, "latencies": {}})
    print(sid, len(score), np.round(score, 2).tolist(), flush=True)
res = {t: summarise(r) for t, r in rows.items()}
out.write_text(json.dumps({"summary": res, "rows": rows}, indent=1))
for t, m in res.items():
    lf = m["lesions_found"]
    print(t, "found", sum(v["found"] for v in lf.values()), [lf[b]["found"] for b in lf], "visible", m["visible_10mm"],
          "fp", m["false_positives_per_study"], "liver", m["liver_dice"], "whole", m["whole_liver_dice"], "tg", m["tumour_global_dice"])
