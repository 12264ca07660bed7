"""`liver-tumor bench probe`: a quick screen of small-lesion detection, checkpoints side by side on the same crops.

One synthetic lesion (lib/transforms/synthesis.py, the lesion model training paints with) is painted into each of
N crops centred deep in the livers of labelled studies; every crop goes through each network alone, in evaluation
mode (no sliding window, no clean-up; a study noisier than the app's bound is smoothed as /infer smooths it,
lib/transforms/denoise.py). A lesion is found when its highest tumour probability passes 0.5, and
visible as the sensitivity target counts it (10 mm or more, its mean 10 HU or more off the liver around it,
lib/metrics/lesions.py). False tumour: liver voxels called tumour 3 voxels or more away from the painted lesion and
from the study's own tumours. Minutes where `bench accuracy` on 20 phantoms takes six for each checkpoint: for
choosing which checkpoints deserve the full evaluation, not a substitute for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from monai.transforms import Compose, LoadImaged
from scipy import ndimage

from ..metrics.lesions import LIVER, TUMOUR, contrast_hu, equivalent_diameter_mm, is_visible
from ..settings import Settings
from ..transforms.denoise import SmoothNoisyd, noise_hu
from ..transforms.preprocess import hu_to_window, preprocessing, window_to_hu
from ..transforms.synthesis import paint

AWAY_VOXELS = 3  # false tumour is counted this far from any lesion, past a lesion's blurred edge
BORDER_VOXELS = 4  # a painted lesion this close to the crop's edge is drawn again: the network would see half of it
DEPTH_MM = 15.0  # crop centres lie this deep in the liver at least
TRIES = 20  # draws of a crop's centre and lesion before the crop is given up


@dataclass(frozen=True)
class ProbeConfig:
    crops: int = 40
    size_mm: tuple[float, float] = (12.0, 16.0)  # drawn; measured (partial volume, lobulation) about 10 to 15
    crop_mm: float = 96.0
    spacing: float = 1.0  # the networks' working spacing
    studies: int = 10  # the first this many labelled studies give the crops, in turn
    seed: int = 5
    found_p: float = 0.5  # a lesion is found where the tumour probability on it passes this
    denoise_above_hu: float = Settings.denoise_above_hu  # the app's, as /infer applies them
    denoise_sigma_mm: float = Settings.denoise_sigma_mm

    @property
    def crop_voxels(self) -> int:
        """The crop's side in voxels, a multiple of 16 as the UNet's four halvings need."""
        return max(16, int(round(self.crop_mm / self.spacing / 16)) * 16)


@dataclass(frozen=True)
class ProbeCrop:
    study: str
    image: np.ndarray  # (S, S, S) windowed to 0..1, the network's input
    label: np.ndarray  # the study's label in the crop, the painted lesion's voxels tumour
    lesion: np.ndarray  # the painted lesion's voxels
    kind: str
    diameter_mm: float  # of the sphere of the painted voxels' volume
    contrast_hu: float | None

    @property
    def visible(self) -> bool:
        return is_visible(self.diameter_mm, self.contrast_hu)


def _padded(volume: np.ndarray, box_lo: np.ndarray, size: int) -> np.ndarray:
    """volume[box_lo : box_lo + size] per axis, zeros where the box leaves the volume."""
    out = np.zeros((size,) * 3, volume.dtype)
    src = tuple(slice(max(0, lo), min(dim, lo + size)) for lo, dim in zip(box_lo, volume.shape))
    dst = tuple(slice(s.start - lo, s.stop - lo) for s, lo in zip(src, box_lo))
    out[dst] = volume[src]
    return out


def study_crops(study: str, image: np.ndarray, label: np.ndarray, count: int, rng: np.random.Generator,
                cfg: ProbeConfig, smooth: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[ProbeCrop]:
    """`count` crops of one study (image windowed to 0..1, label 0/1/2, both at cfg.spacing), a lesion in each;
    `smooth`, where given, applied to each painted crop (the lesion's contrast is measured before)."""
    spacing = (cfg.spacing,) * 3
    size = cfg.crop_voxels
    organ = label >= LIVER
    depth = ndimage.distance_transform_edt(organ, sampling=spacing)
    centres = np.argwhere(depth >= min(DEPTH_MM, 0.5 * depth.max()))
    inner = np.zeros((size,) * 3, bool)
    inner[(slice(BORDER_VOXELS, size - BORDER_VOXELS),) * 3] = True
    out = []
    for _ in range(count):
        for _ in range(TRIES):
            box_lo = centres[rng.integers(len(centres))] - size // 2
            crop_label = _padded(label, box_lo, size)
            liver = crop_label == LIVER
            painted = paint(rng, window_to_hu(_padded(image, box_lo, size)), liver, spacing, 1, cfg.size_mm)
            lesion = painted.tumour
            if lesion.any() and not (lesion & ~inner).any():
                break
        else:
            continue
        crop_label[lesion] = TUMOUR
        x = np.clip(hu_to_window(painted.hu), 0, 1).astype(np.float32)
        if smooth is not None:
            x = np.asarray(smooth(torch.from_numpy(x)[None]))[0]
        out.append(ProbeCrop(
            study=study, image=x, label=crop_label, lesion=lesion, kind=painted.lesions[0]["kind"],
            diameter_mm=round(equivalent_diameter_mm(lesion.sum() * cfg.spacing**3 / 1000.0), 1),
            contrast_hu=contrast_hu(painted.hu, lesion, liver, np.asarray(spacing))))
    return out


def clean_liver(label: np.ndarray) -> np.ndarray:
    """Liver voxels where a tumour call is false: AWAY_VOXELS or more from every tumour, painted or the study's."""
    return (label == LIVER) & ~ndimage.binary_dilation(label == TUMOUR, iterations=AWAY_VOXELS)


def make_crops(cases: Iterable[tuple[str, Path, Path]], cfg: ProbeConfig,
               progress: Callable[[str], None] = print) -> list[ProbeCrop]:
    """The probe's crops from (id, image, label) studies, each loaded and resampled as the networks see them."""
    cases = list(cases)[: min(cfg.studies, cfg.crops)]
    if not cases:
        raise ValueError("no labelled study to paint lesions into")
    load = Compose([LoadImaged(["image", "label"], image_only=True)]
                   + preprocessing((cfg.spacing,) * 3, ("image", "label"), "label"))
    smoother = SmoothNoisyd("image", "noise", cfg.denoise_above_hu, cfg.denoise_sigma_mm, (cfg.spacing,) * 3)
    rng = np.random.default_rng(cfg.seed)
    crops: list[ProbeCrop] = []
    for i, (sid, image, label) in enumerate(cases):
        d = load({"image": str(image), "label": str(label)})
        img, lab = np.asarray(d["image"][0], np.float32), np.asarray(d["label"][0]).round().astype(np.uint8)
        count = cfg.crops // len(cases) + (i < cfg.crops % len(cases))
        if (lab >= LIVER).sum() == 0:
            progress(f"{sid}: no liver in its label, skipped")
            continue
        # the study's noise decides, as in /infer; the crops are smoothed after their lesion is painted
        smooth = smoother.smooth if smoother.smooths(noise_hu(torch.from_numpy(img)[None])) else None
        crops += study_crops(sid, img, lab, count, rng, cfg, smooth)
        progress(f"{sid}: {len(crops)} crops so far")
    return crops


def probe(network: torch.nn.Module, crops: list[ProbeCrop], cfg: ProbeConfig, device: str = "cpu") -> dict:
    """What one network makes of the crops: each lesion's highest tumour probability, and the summary."""
    network = network.to(device).eval()
    max_p, false_voxels = [], 0
    with torch.no_grad():
        for c in crops:
            x = torch.from_numpy(c.image)[None, None].to(device)
            p = torch.softmax(network(x).float(), 1)[0, TUMOUR].cpu().numpy()
            max_p.append(float(p[c.lesion].max()))
            false_voxels += int((p[clean_liver(c.label)] > cfg.found_p).sum())
    found = [p > cfg.found_p for p in max_p]
    visible = [c.visible for c in crops]
    kinds = sorted({c.kind for c in crops})
    return {
        "visible_found": sum(f and v for f, v in zip(found, visible)), "visible": sum(visible),
        "found": sum(found), "lesions": len(crops),
        "visible_by_kind": {k: [sum(f and v for f, v, c in zip(found, visible, crops) if c.kind == k),
                                sum(v for v, c in zip(visible, crops) if c.kind == k)] for k in kinds},
        "false_tumour_ml_per_crop": round(false_voxels * cfg.spacing**3 / 1000.0 / max(1, len(crops)), 3),
        "max_tumour_p": [round(p, 4) for p in max_p],
    }


def run(cases: Iterable[tuple[str, Path, Path]], networks: dict[str, torch.nn.Module], cfg: ProbeConfig,
        device: str = "cpu", progress: Callable[[str], None] = print) -> dict:
    """Every network on the same crops: {"config", "models": {name: summary}, "crops": [each lesion]}."""
    crops = make_crops(cases, cfg, progress)
    models = {}
    for name, net in networks.items():
        models[name] = probe(net, crops, cfg, device)
        m = models[name]
        progress(f"{name}: {m['visible_found']} of {m['visible']} visible lesions found, "
                 f"{m['false_tumour_ml_per_crop']} mL false tumour a crop")
    return {"config": asdict(cfg), "models": models,
            "crops": [{"study": c.study, "kind": c.kind, "diameter_mm": c.diameter_mm,
                       "contrast_hu": None if c.contrast_hu is None else round(c.contrast_hu, 1),
                       "visible": c.visible} for c in crops]}
