"""Run S1: the extracted studies (extract.py) read at each threshold, measured as bench accuracy measures
(evaluate()/summarise()); t_0.0 is every candidate kept, the union the reader reads.
usage: sweep.py READER_JSON EXTRACTED OUT.json T1,T2,... DIR..."""
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, "/work/main")
from lib.data.labelled import labelled_studies  # noqa: E402
from lib.data.phantoms.study import known_tumours  # noqa: E402
from lib.metrics.evaluate import evaluate, summarise  # noqa: E402
from lib.reader.candidates import FEATURES  # noqa: E402
from lib.reader.trees import Trees  # noqa: E402

trees, src, out = Trees(Path(sys.argv[1])), Path(sys.argv[2]), Path(sys.argv[3])
thresholds = [float(t) for t in sys.argv[4].split(",")]
cases = [c for d in sys.argv[5:] for c in labelled_studies(Path(d))]
score = {}
for sid, _, _ in cases:
    rows = json.loads((src / sid / "cands.json").read_text())["rows"]
    x = np.array([[r[f] for f in FEATURES] for r in rows]).reshape(-1, len(FEATURES))
    score[sid] = trees.probability(x) if len(rows) else np.zeros(0)
tmp = Path(tempfile.mkdtemp())


def variant(t):
    def infer(request):
        sid = Path(request["image"]).name.removesuffix(".nii.gz")
        lab = nib.load(src / sid / "all.nii.gz")
        parts = np.asarray(nib.load(src / sid / "parts.nii.gz").dataobj)
        data = (np.asarray(lab.dataobj) > 0).astype(np.uint8)
        data[np.isin(parts, np.flatnonzero(score[sid] >= t) + 1)] = 2
        path = tmp / f"{sid}_{time.time_ns()}.nii.gz"
        nib.save(nib.Nifti1Image(data, lab.affine), path)
        return str(path), {}
    return infer


results = {f"t_{t}": summarise(evaluate(variant(t), cases, known=known_tumours)) for t in [0.0, *thresholds]}
out.write_text(json.dumps(results, indent=1))
for name, r in results.items():
    print(name, json.dumps({k: r.get(k) for k in ("liver_dice", "whole_liver_dice", "tumour_global_dice",
                                                  "visible_10mm", "lesions_found", "false_positives_per_study")}))
