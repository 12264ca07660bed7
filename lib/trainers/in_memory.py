"""A compact training loop for small networks on studies held in memory: a fixed number of steps, no engine.

The locator recipe (lib.recipes.locator) and the label-efficiency benchmark (`bench al`) train with it. It is
written here rather than on MONAI's SupervisedTrainer because both need what the engine makes costly: many short
runs on a few pre-processed volumes kept as tensors, a step budget rather than epochs, and fine-tuning a model
handed in as an object. The app's own training is lib.trainers.liver_tumor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.transforms import Compose, LoadImaged, RandCropByLabelClassesd, RandFlipd
from monai.utils import set_determinism

from ..data.phantoms.batch import make_phantoms
from ..data.phantoms.study import study_id, study_paths
from ..metrics.dice import dice
from ..metrics.lesions import lesion_detection
from ..model.autocast import AutocastInferer, autocast_dtype, training_dtype
from ..model.network import NUM_CLASSES, STRIDES, build_unet
from ..settings import Settings
from ..transforms.augment import augmentations
from ..transforms.postprocess import CleanUp
from ..transforms.preprocess import preprocessing

TUMOUR_CE_WEIGHTS = (1.0, 1.0, 10.0)
CLEAN_UP = CleanUp.of(Settings())  # the app's post-processing defaults


@dataclass(frozen=True)
class LoopConfig:
    spacing: float = 4.0  # mm, isotropic: the working grid of the studies
    steps: int = 200
    crop: int = 40
    crops_per_step: int = 4
    learning_rate: float = 2e-3
    channels: tuple[int, ...] = (8, 16, 32, 64)
    augment_prob: float = 0.0  # nnU-Net's augmentations, each with this chance (lib.transforms.augment)
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")

    @property
    def affine(self) -> np.ndarray:
        """The working grid's voxel-to-millimetre map (isotropic `spacing`), for measures in mm and mL."""
        return np.diag([self.spacing] * 3 + [1.0])


@dataclass
class Study:
    id: str
    image: torch.Tensor  # (1, X, Y, Z), windowed 0..1, working grid
    label: torch.Tensor  # (1, X, Y, Z) uint8


def load_studies(folder: Path, seed: int, count: int, preset: str, spacing: float) -> list[Study]:
    """`count` phantoms of `seed` (made into `folder` when missing), pre-processed as the app does at `spacing`."""
    make_phantoms(folder, count, seed, preset, progress=False)
    load = Compose([LoadImaged(keys=("image", "label")),
                    *preprocessing((spacing,) * 3, keys=("image", "label"), label_key="label")])
    studies = []
    for i in range(count):
        sid = study_id(seed, i)
        d = load({"image": str(study_paths(folder, sid)["image"]), "label": str(study_paths(folder, sid)["label"])})
        studies.append(Study(sid, d["image"].as_tensor().float(), d["label"].as_tensor().to(torch.uint8)))
    return studies


def _dtype(device: str) -> torch.dtype | None:
    return autocast_dtype(device, True, cpu_bf16=True)


def train(studies: list[Study], cfg: LoopConfig, seed: int, start: torch.nn.Module | None = None,
          steps: int | None = None) -> torch.nn.Module:
    """From scratch, or fine-tuning `start`, for `steps` (cfg.steps) steps; each step draws crops_per_step crops
    from one labelled study, centred on background, liver and tumour 1:1:2 (tumour is what is rare); Dice plus
    class-weighted cross-entropy."""
    set_determinism(seed=seed)
    net = build_unet(0.2, cfg.channels).to(cfg.device)
    if start is not None:
        net.load_state_dict(start.state_dict())
    optimiser = torch.optim.Adam(net.parameters(), cfg.learning_rate)
    # tumour weighs 10 in the cross-entropy and the Dice term: unweighted, this budget never predicts it (measured:
    # mean tumour probability inside the tumours below 0.01 after 150 steps)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, weight=torch.tensor(TUMOUR_CE_WEIGHTS, device=cfg.device))
    crop = Compose([
        RandCropByLabelClassesd(keys=("image", "label"), label_key="label", spatial_size=(cfg.crop,) * 3,
                                ratios=[1, 1, 2], num_classes=NUM_CLASSES, num_samples=cfg.crops_per_step,
                                allow_smaller=True, warn=False),
        RandFlipd(keys=("image", "label"), spatial_axis=0, prob=0.2),
        *augmentations(cfg.augment_prob),
    ])
    crop.set_random_state(seed)
    rng = np.random.default_rng(seed)
    device_type = torch.device(cfg.device).type
    dtype = training_dtype(cfg.device, True, True, cfg.crop, STRIDES[:len(cfg.channels) - 1])
    net.train()
    for _ in range(steps or cfg.steps):
        s = studies[int(rng.integers(len(studies)))]
        crops = crop({"image": s.image, "label": s.label})
        x = torch.stack([c["image"].as_tensor() for c in crops]).to(cfg.device)
        y = torch.stack([c["label"].as_tensor() for c in crops]).to(cfg.device)
        if min(x.shape[2:]) < cfg.crop:  # a study smaller than the crop: pad to the crop (all crops alike)
            pad = [p for d in reversed(x.shape[2:]) for p in (0, max(0, cfg.crop - d))]
            x, y = torch.nn.functional.pad(x, pad), torch.nn.functional.pad(y, pad)
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(net(x).float(), y.long())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return net.eval()


def predict(net: torch.nn.Module, study: Study, cfg: LoopConfig) -> np.ndarray:
    """The model's label of a study on the working grid, after the app's post-processing (largest liver, tumour
    near it, no specks)."""
    inferer = AutocastInferer(SlidingWindowInferer(roi_size=(cfg.crop * 2,) * 3, overlap=0.25, sw_batch_size=1),
                              torch.device(cfg.device).type, _dtype(cfg.device))
    with torch.no_grad():
        pred = inferer(study.image[None].to(cfg.device), net).argmax(1)[0].cpu().numpy()
    return CLEAN_UP(pred, (cfg.spacing,) * 3)


def evaluate(net: torch.nn.Module, studies: list[Study], cfg: LoopConfig) -> dict:
    """Per-case and mean Dice of predict's labels, and the share of true lesions found over all the studies."""
    cases, found, lesions = [], 0, 0
    for s in studies:
        pred, truth = predict(net, s, cfg), s.label[0].numpy()
        detected = lesion_detection(pred, truth, cfg.affine)
        found, lesions = found + detected["found"], lesions + detected["true_lesions"]
        cases.append({"id": s.id, "liver": dice(pred, truth, 1), "tumour": dice(pred, truth, 2)})
    mean = {k: float(np.mean([c[k] if c[k] is not None else 1.0 for c in cases])) for k in ("liver", "tumour")}
    return {**mean, "sensitivity": found / lesions if lesions else 1.0, "cases": cases}
