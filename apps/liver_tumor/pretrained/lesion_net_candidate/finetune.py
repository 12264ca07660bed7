"""One-off experiment (run L2): run L1's lesion network fine-tuned on its own false positives of the training
phantoms (hard-negative mining, one round). Rules: rules_l2.md beside this file.
Run from the repository root: finetune.py STORE OUT lesion_net.pt 1000 40 (train.py beside it)."""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from train import BATCH, CROP, network, prepare  # noqa: E402

from lib.transforms.synthesis import SynthesizeTumoursd  # noqa: E402

torch.set_num_threads(2)
rng = np.random.default_rng(2)
torch.manual_seed(2)


def mine(net, img: np.ndarray, lab: np.ndarray) -> list[np.ndarray]:
    """Centres (and one random voxel each) of the network's false-positive components in this liver box."""
    x = torch.from_numpy(img.astype(np.float32))[None, None]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = sliding_window_inference(x, (96, 96, 96), 2, net, overlap=0.25, mode="gaussian")
    prob = logits.float().softmax(1)[0, 1].numpy()
    near = ndimage.binary_dilation(lab > 0, iterations=2)
    parts, n = ndimage.label((prob >= 0.5) & near)
    truth = lab == 2
    sites = []
    for i, sl in enumerate(ndimage.find_objects(parts), start=1):
        comp = parts[sl] == i
        if comp.sum() < 250 or truth[sl][comp].any():  # 0.25 mL at 1 mm
            continue
        vox = np.argwhere(comp) + np.array([s.start for s in sl])
        sites.append(np.round(vox.mean(0)).astype(int))
        sites.append(vox[rng.integers(len(vox))])
    return sites


def main() -> None:
    store, out, start_weights = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    steps, minutes = int(sys.argv[4]), float(sys.argv[5])
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted(p.name[:-7] for p in (store / "labels" / "final").glob("phantom_*.nii.gz"))
    t0 = time.time()
    data = [prepare(store / f"{i}.nii.gz", store / "labels" / "final" / f"{i}.nii.gz") for i in ids]
    print(f"prepared {len(data)} studies in {time.time() - t0:.0f} s", flush=True)
    net = network()
    net.load_state_dict(torch.load(start_weights, map_location="cpu"))
    net.eval()
    t0 = time.time()
    fp_sites = []
    for k, (img, lab) in enumerate(data):
        sites = mine(net, img, lab)
        fp_sites.append(sites)
        print(f"mined {ids[k]}: {len(sites) // 2} false positives ({time.time() - t0:.0f} s)", flush=True)
    counts = [len(s) // 2 for s in fp_sites]
    print(json.dumps({"false_positives_mined": sum(counts), "studies_with_any": sum(c > 0 for c in counts),
                      "mining_minutes": round((time.time() - t0) / 60, 1)}), flush=True)
    with_fp = [k for k, s in enumerate(fp_sites) if s]
    net.train()
    tumour_idx = [np.argwhere(lab == 2) for _, lab in data]
    liver_idx = [np.argwhere(lab == 1)[::7] for _, lab in data]
    synth = SynthesizeTumoursd(prob=0.5, lesions=(1, 3), size_mm=(8.0, 25.0))
    synth.set_random_state(3)
    opt = torch.optim.AdamW(net.parameters(), 3e-4, weight_decay=1e-5)
    floor = 1e-5 / 3e-4
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    weight = torch.tensor([1.0, 3.0])
    log = open(out / "log.jsonl", "a")
    start, losses = time.time(), []
    half = CROP // 2
    for step in range(1, steps + 1):
        images, labels = [], []
        for _ in range(BATCH):
            r = rng.random()
            if 0.25 <= r < 0.55 and with_fp:
                k = with_fp[int(rng.integers(len(with_fp)))]
                c = fp_sites[k][rng.integers(len(fp_sites[k]))]
            else:
                k = int(rng.integers(len(data)))
                lab = data[k][1]
                if r < 0.25 and len(tumour_idx[k]):
                    c = tumour_idx[k][rng.integers(len(tumour_idx[k]))]
                elif r < 0.9:
                    c = liver_idx[k][rng.integers(len(liver_idx[k]))]
                else:
                    c = np.array([rng.integers(s) for s in lab.shape])
            img, lab = data[k]
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
        opt.step()
        sched.step()
        losses.append(float(loss))
        elapsed = time.time() - start
        if step % 50 == 0:
            row = {"step": step, "loss": round(float(np.mean(losses[-50:])), 4), "lr": sched.get_last_lr()[0],
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
