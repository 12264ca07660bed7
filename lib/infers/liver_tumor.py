"""InferTask `liver_tumor`: the path of one study, top to bottom.

load (and check, in the stored voxel type) -> find the liver at 4 mm and crop the study to it, in its own voxels
(the cascade; the whole volume when there is no locator or the liver is not found or at the border) -> orient
RAS -> resample to the model's spacing -> HU window -21..189 to 0..1 -> crop to the body -> sliding-window UNet
(CUDA with AMP, or CPU with bf16 where it has it, channels-last) -> argmax -> back to the crop's grid (the
inverse of the pre-processing, nearest neighbour, done once on the label) -> clean up (one liver, tumour near
it, no specks) -> report volumes and lesions -> paste into the study's shape -> write, with its affine.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    Invertd,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
    SqueezeDimd,
)
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from ..configs.settings import Settings
from ..errors import InvalidInput, ModelUnavailable
from ..model.checkpoint import load_network, read_card
from ..model.network import HU_WINDOW, LABELS, build_unet
from ..transforms.image_path import RestoreImagePathd, StashImagePathd
from ..transforms.load import LoadCTd
from ..transforms.postprocess import LiverTumorPostprocessd, channel_argmax
from ..transforms.region import CropToLiverd, PasteIntoStudyd
from ..transforms.report import LesionReportd
from .autocast import AutocastInferer, autocast_dtype
from .locate import Locator


def preprocessing(spacing: Sequence[float], keys: Sequence[str] = ("image",), label_key: str | None = None
                  ) -> list[Callable]:
    """The seed's deterministic pre-processing, shared by inference, training and validation."""
    keys = list(keys)
    modes = ["bilinear" if k != label_key else "nearest" for k in keys]
    return [
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
        # float32 resampling: MONAI's default float64 takes a quarter longer here and 1 HU does not need it
        Spacingd(keys=keys, pixdim=tuple(spacing), mode=modes, dtype=torch.float32),
        ScaleIntensityRanged(keys="image", a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys=keys, source_key="image", allow_smaller=True),
        EnsureTyped(keys=keys),
    ]


def _request_roi(value: Any, default: Sequence[int]) -> tuple[int, int, int]:
    """A request's roi_size: one size or three, as numbers or as text ("128" or "128,128,96")."""
    roi = default if value is None else value
    if isinstance(roi, str):
        roi = [v for v in roi.replace("[", "").replace("]", "").replace(" ", "").split(",") if v]
    roi = [roi] * 3 if isinstance(roi, (int, float)) else list(roi)
    if len(roi) == 1:
        roi = roi * 3
    try:
        sizes = tuple(int(v) for v in roi)
    except (TypeError, ValueError):
        sizes = ()
    if len(sizes) != 3 or min(sizes) < 16:
        raise InvalidInput(f"roi_size must be three sizes of at least 16 voxels, got {value!r}")
    return sizes  # type: ignore[return-value]


def fitted_roi(shape: Sequence[int], roi: Sequence[int], overlap: float) -> tuple[int, int, int]:
    """The smallest windows (multiples of 16, at most `roi`) that cover `shape` with as many windows per axis as
    `roi` needs at this overlap. A 224-voxel liver region takes two 160-voxel windows per axis, 96 voxels of them
    overlapping; two 128-voxel windows cover it at the same 25% overlap with half the voxels."""
    out = []
    for n_voxels, r in zip(shape, roi):
        count = 1 if n_voxels <= r else 1 + math.ceil((n_voxels - r) / (r * (1 - overlap)))
        fitted = n_voxels / (1 + (count - 1) * (1 - overlap))
        out.append(int(min(r, max(16, 16 * math.ceil(fitted / 16)))))
    return tuple(out)  # type: ignore[return-value]


class LiverTumorInfer(BasicInferTask):
    def __init__(self, path: Sequence[str | None], settings: Settings, description: str) -> None:
        super().__init__(
            path=[p for p in path if p],
            network=build_unet(settings.dropout),
            type=InferType.SEGMENTATION,
            labels=LABELS,
            dimension=3,
            description=description,
            roi_size=settings.roi_size,
            config={"roi_size": list(settings.roi_size), "sw_overlap": settings.sw_overlap,
                    "sw_batch_size": settings.sw_batch_size, "cpu_bf16": settings.cpu_bf16,
                    "cascade": settings.locator is not None, "fit_windows": True},
        )
        self.settings = settings
        self._loaded: dict[str, tuple[torch.nn.Module, str, float]] = {}
        self._locators: dict[str, Locator] = {}

    # ---- what clients see
    def model_path(self) -> str | None:
        return self.get_path()

    def info(self) -> dict[str, Any]:
        info = super().info()
        path = self.model_path()
        card = read_card(Path(path)) if path else {}
        info["model"] = {
            "available": path is not None,
            "path": path,
            "trained_on": card.get("trained_on", "unknown" if path else None),
            "card": card,
            "status": "ready" if path else "no model: no demo checkpoint and none trained yet; train one "
                                          "(POST /train/liver_tumor) or start with --conf pretrained_path FILE",
        }
        return info

    def is_valid(self) -> bool:
        return True  # listed in /info even without weights, which /info then says

    # ---- the stages
    def pre_transforms(self, data=None) -> Sequence[Callable]:
        data = data or {}
        cascade = _flag(data.get("cascade", True))
        return [StashImagePathd(), LoadCTd("image", dtype=None, max_mb=self.settings.max_image_mb,
                                           json_key=self.output_json_key),
                CropToLiverd("image", lambda: self._locator(data) if cascade else "cascade off in the request"),
                *preprocessing(self.settings.spacing)]

    def inferer(self, data=None) -> Inferer:
        data = data or {}
        overlap = float(data.get("sw_overlap", self.settings.sw_overlap))
        batch = int(data.get("sw_batch_size", self.settings.sw_batch_size))
        if not 0 <= overlap < 1 or batch < 1:
            raise InvalidInput(f"sw_overlap must be in [0, 1) and sw_batch_size at least 1, got {overlap}, {batch}")
        device = data.get("device", "cpu")
        roi = _request_roi(data.get("roi_size"), self.settings.roi_size)
        image = data.get(self.input_key)
        if image is not None and _flag(data.get("fit_windows", True)):
            roi = fitted_roi(tuple(image.shape[1:]), roi, overlap)
        inner = SlidingWindowInferer(roi_size=roi, overlap=overlap, sw_batch_size=batch, mode="gaussian",
                                     sw_device=device, device=device, cache_roi_weight_map=True)
        return AutocastInferer(inner, torch.device(device).type, self._dtype(data))

    def _dtype(self, data: dict[str, Any]) -> torch.dtype | None:
        return autocast_dtype(data.get("device", "cpu"), self.settings.amp,
                              _flag(data.get("cpu_bf16", self.settings.cpu_bf16)))

    def run_invert_transforms(self, data: dict[str, Any], pre_transforms, names):
        """Argmax, then undo crop, resampling and orientation with MONAI's Invertd, once, on the label."""
        pred = data[self.output_label_key]
        labels = channel_argmax(torch.as_tensor(pred))
        if _flag(data.get("uncertainty", False)):
            data[self.output_json_key] = {**data.get(self.output_json_key, {}),
                                          "uncertainty": foreground_entropy(torch.as_tensor(pred), labels[0])}
        data[self.output_label_key] = MetaTensor(labels, meta=pred.meta) if isinstance(pred, MetaTensor) else labels
        invert = Invertd(keys=self.output_label_key, transform=Compose(list(pre_transforms)), orig_keys="image",
                         nearest_interp=True, to_tensor=True)
        return invert(data)

    def post_transforms(self, data=None) -> Sequence[Callable]:
        s = self.settings
        return [
            LiverTumorPostprocessd(self.output_label_key, s.tumour_margin_mm, s.min_tumour_ml),
            SqueezeDimd(keys=self.output_label_key, dim=0),
            LesionReportd(self.output_label_key, self.output_json_key),  # all of the label lies in the region
            PasteIntoStudyd(self.output_label_key, self.output_json_key),
            RestoreImagePathd(),
        ]

    # ---- the network, loaded once per device and again when the file changes (a newly published model)
    def _get_network(self, device, data):
        path = self.model_path()
        if path is None:
            raise ModelUnavailable("no liver_tumor model yet: no demo checkpoint and none trained; train one "
                                   "(POST /train/liver_tumor) or start with --conf pretrained_path FILE")
        mtime = os.stat(path).st_mtime
        cached = self._loaded.get(str(device))
        if cached and cached[1] == path and cached[2] == mtime:
            return cached[0]
        network = load_network(Path(path), self.settings.dropout, device)
        if self.settings.channels_last:
            network = network.to(memory_format=torch.channels_last_3d)
        self._loaded[str(device)] = (network, path, mtime)
        return network

    def _locator(self, data: dict[str, Any]) -> Locator | str:
        """The locator on the request's device, loaded once; or why there is none (the plain path)."""
        path = self.settings.locator
        if path is None:
            return "no locator (--conf locator_path none)"
        if not path.exists():
            return f"no locator model at {path}"
        device, dtype = str(data.get("device", "cpu")), self._dtype(data)
        key = f"{device}/{dtype}"
        if key not in self._locators:
            card = read_card(path)
            network = load_network(path, 0.0, device, tuple(card["channels"]))
            self._locators[key] = Locator(network, float(card["spacing_mm"]), self.settings.locator_margin_mm,
                                          float(card["min_liver_ml"]), device, dtype)
        return self._locators[key]

    def clear_cache(self):
        self._loaded.clear()
        self._locators.clear()
        super().clear_cache()


def foreground_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float | None:
    """The model's uncertainty from the same forward pass: the mean entropy of the class probabilities over the
    voxels it labels liver or tumour, divided by log(classes) so that 0 is certain and 1 is a coin toss. None when
    it labels nothing."""
    foreground = labels > 0
    if not bool(foreground.any()):
        return None
    p = torch.softmax(logits[:, foreground].float(), dim=0)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(0) / math.log(logits.shape[0])
    return round(float(entropy.mean()), 4)


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")
