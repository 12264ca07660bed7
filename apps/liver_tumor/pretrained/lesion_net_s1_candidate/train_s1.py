"""One-off experiment (run S1): run L1's lesion network recipe with a strided first level (not in the project
unless it passes). UNet (8,16,32,64,128), strides (2,2,2,2): L1's network with its first level strided, 5.9 times
cheaper a voxel (0.073 s against 0.43 s for two 96^3 windows in bf16 on this CPU) with as many weights. Trained on
64^3 crops of the recipe's 40 training phantoms (seed 1000) around the liver, tumour vs not, with synthetic
lesions of 8 to 25 mm in half the crops; AdamW 1e-3, cosine to 1e-5 over the time given (not the steps), bf16
autocast."""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.nets import UNet
from monai.transforms import Compose, LoadImaged

from lib.transforms.denoise import SmoothNoisyd
from lib.transforms.preprocess import preprocessing
from lib.transforms.synthesis import SynthesizeTumoursd

torch.set_num_threads(2)
CROP, BATCH, MARGIN = 64, 4, 24
rng = np.random.default_rng(0)
torch.manual_seed(0)


def network() -> UNet:
    return UNet(3, 1, 2, (8, 16, 32, 64, 128), (2, 2, 2, 2), num_res_units=2, norm="batch")


def prepare(image: Path, label: Path):
    t = Compose([LoadImaged(keys=["image", "label"], image_only=True),
                 *preprocessing((1.0, 1.0, 1.0), ("image", "label"), "label"),
                 SmoothNoisyd("image", "result", 10.0, 1.0, (1.0, 1.0, 1.0))])
    d = t({"image": str(image), "label": str(label)})
    img, lab = d["image"][0].numpy(), d["label"][0].numpy().astype(np.uint8)
    nz = np.argwhere(lab > 0)
    lo = np.maximum(nz.min(0) - MARGIN, 0)
    hi = np.minimum(nz.max(0) + MARGIN + 1, lab.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    return img[box].astype(np.float16), lab[box]


def main() -> None:
    store, out = Path(sys.argv[1]), Path(sys.argv[2])
    steps, minutes = int(sys.argv[3]), float(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted(p.name[:-7] for p in (store / "labels" / "final").glob("phantom_*.nii.gz"))
    t0 = time.time()
    data = [prepare(store / f"{i}.nii.gz", store / "labels" / "final" / f"{i}.nii.gz") for i in ids]
    print(f"prepared {len(data)} studies in {time.time() - t0:.0f} s", flush=True)
    tumour_idx = [np.argwhere(lab == 2) for _, lab in data]
    liver_idx = [np.argwhere(lab == 1)[::7] for _, lab in data]
    synth = SynthesizeTumoursd(prob=0.5, lesions=(1, 3), size_mm=(8.0, 25.0))
    synth.set_random_state(1)
    net = network()
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-5)
    def lr_at(elapsed: float) -> float:
        return 1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(elapsed / (minutes * 60), 1.0))))
    weight = torch.tensor([1.0, 3.0])
    log = open(out / "log.jsonl", "a")
    start, losses = time.time(), []
    half = CROP // 2
    for step in range(1, steps + 1):
        images, labels = [], []
        for _ in range(BATCH):
            k = int(rng.integers(len(data)))
            img, lab = data[k]
            r = rng.random()
            if r < 0.35 and len(tumour_idx[k]):
                c = tumour_idx[k][rng.integers(len(tumour_idx[k]))]
            elif r < 0.85:
                c = liver_idx[k][rng.integers(len(liver_idx[k]))]
            else:
                c = np.array([rng.integers(s) for s in lab.shape])
            c = c + rng.integers(-12, 13, 3)
            lo = np.clip(c - half, 0, np.maximum(np.array(lab.shape) - CROP, 0))
            box = tuple(slice(a, a + CROP) for a in lo)
            ci, cl = np.zeros((CROP,) * 3, np.float32), np.zeros((CROP,) * 3, np.uint8)
            pi, pl = img[box].astype(np.float32), lab[box]
            ci[:pi.shape[0], :pi.shape[1], :pi.shape[2]] = pi
            cl[:pl.shape[0], :pl.shape[1], :pl.shape[2]] = pl
            d = synth({"image": MetaTensor(torch.from_numpy(ci)[None], affine=torch.eye(4)),
                       "label": MetaTensor(torch.from_numpy(cl)[None], affine=torch.eye(4))})
            x, y = torch.as_tensor(d["image"]).float(), torch.as_tensor(d["label"])
            for axis in (1, 2, 3):
                if rng.random() < 0.5:
                    x, y = x.flip(axis), y.flip(axis)
            images.append(x)
            labels.append((y == 2).long())
        x, y = torch.stack(images), torch.stack(labels)[:, 0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        logits = logits.float()
        ce = torch.nn.functional.cross_entropy(logits, y, weight=weight)
        p = logits.softmax(1)[:, 1]
        t = y.float()
        dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
        loss = ce + dice
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr_at(time.time() - start)
        opt.step()
        losses.append(float(loss))
        elapsed = time.time() - start
        if step % 50 == 0:
            row = {"step": step, "loss": round(float(np.mean(losses[-50:])), 4), "lr": opt.param_groups[0]["lr"],
                   "minutes": round(elapsed / 60, 1)}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
        if step % 250 == 0 or step == steps or elapsed > minutes * 60:
            torch.save(net.state_dict(), out / "lesnet.pt")
        if elapsed > minutes * 60:
            print(f"time up at step {step}", flush=True)
            break


if __name__ == "__main__":
    main()
