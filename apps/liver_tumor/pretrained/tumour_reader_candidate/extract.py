"""R2: the shipped model's tumour candidates of labelled studies, measured. usage: extract.py STUDIES LABELS OUT.npz"""
import sys
from pathlib import Path
import numpy as np, nibabel as nib
from nibabel.affines import voxel_sizes
sys.path.insert(0, "/work/main")
from lib.reader.candidates import FEATURES, candidates, measurements
studies, labels, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
X, Y, G, IDS = [], [], [], []
for lab_file in sorted(labels.glob("*.nii.gz")):
    sid = lab_file.name[:-7]
    img = nib.load(studies / f"{sid}.nii.gz"); lab = nib.load(lab_file)
    truth = np.asanyarray(nib.load(studies / "truth" / f"{sid}.nii.gz").dataobj)
    label = np.asanyarray(lab.dataobj).astype(np.uint8)
    assert np.allclose(img.affine, lab.affine) and img.shape == label.shape
    ct = np.asarray(img.dataobj, np.float32)
    sp = voxel_sizes(img.affine)
    zeros = np.zeros(label.shape, np.float32)
    parts = candidates(label, zeros, sp)
    x = measurements(ct, label, zeros, parts, sp)
    for i in range(1, parts.max() + 1):
        Y.append(bool((truth[parts == i] == 2).any())); G.append(sid); IDS.append(i)
    X.append(x)
    print(sid, len(x), "true", sum(Y[-len(x):]) if len(x) else 0, flush=True)
np.savez(out, x=np.concatenate(X), y=np.array(Y), g=np.array(G), i=np.array(IDS), features=np.array(FEATURES))
