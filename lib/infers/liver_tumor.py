"""InferTask `liver_tumor`: the path of one study, top to bottom.

load (and check) -> orient RAS -> resample to the model's spacing -> HU window -21..189 to 0..1 -> crop to the
body -> sliding-window UNet (CUDA with AMP, or CPU) -> argmax -> back to the input's grid (the inverse of the
pre-processing, nearest neighbour, done once on the label) -> clean up (one liver, tumour near it, no specks)
-> report volumes and lesions -> write, with the input's shape and affine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import (
    AsDiscreted,
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
from ..model.network import LABELS, build_unet
from ..transforms.image_path import RestoreImagePathd, StashImagePathd
from ..transforms.load import LoadCTd
from ..transforms.postprocess import LiverTumorPostprocessd
from ..transforms.report import LesionReportd
from .autocast import AutocastInferer, autocast_dtype

HU_WINDOW = (-21.0, 189.0)


def preprocessing(spacing: Sequence[float], keys: Sequence[str] = ("image",), label_key: str | None = None
                  ) -> list[Callable]:
    """The seed's deterministic pre-processing, shared by inference, training and validation."""
    keys = list(keys)
    modes = ["bilinear" if k != label_key else "nearest" for k in keys]
    return [
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
        Spacingd(keys=keys, pixdim=tuple(spacing), mode=modes),
        ScaleIntensityRanged(keys="image", a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys=keys, source_key="image", allow_smaller=True),
        EnsureTyped(keys=keys),
    ]


def _request_roi(value: Any, default: Sequence[int]) -> tuple[int, int, int]:
    roi = default if value is None else value
    roi = [roi] * 3 if isinstance(roi, (int, float)) else list(roi)
    if len(roi) != 3 or any(int(v) < 16 for v in roi):
        raise InvalidInput(f"roi_size must be three sizes of at least 16 voxels, got {value!r}")
    return tuple(int(v) for v in roi)


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
                    "sw_batch_size": settings.sw_batch_size, "cpu_bf16": False},
        )
        self.settings = settings
        self._loaded: dict[str, tuple[torch.nn.Module, str, float]] = {}

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
        return [StashImagePathd(), LoadCTd("image"), *preprocessing(self.settings.spacing)]

    def inferer(self, data=None) -> Inferer:
        data = data or {}
        overlap = float(data.get("sw_overlap", self.settings.sw_overlap))
        batch = int(data.get("sw_batch_size", self.settings.sw_batch_size))
        if not 0 <= overlap < 1 or batch < 1:
            raise InvalidInput(f"sw_overlap must be in [0, 1) and sw_batch_size at least 1, got {overlap}, {batch}")
        device = data.get("device", "cpu")
        inner = SlidingWindowInferer(roi_size=_request_roi(data.get("roi_size"), self.settings.roi_size),
                                     overlap=overlap, sw_batch_size=batch, mode="gaussian", sw_device=device,
                                     device=device)
        dtype = autocast_dtype(device, self.settings.amp, str(data.get("cpu_bf16", "false")).lower() == "true")
        return AutocastInferer(inner, torch.device(device).type, dtype)

    def run_invert_transforms(self, data: dict[str, Any], pre_transforms, names):
        """Argmax, then undo crop, resampling and orientation with MONAI's Invertd, once, on the label."""
        data = AsDiscreted(keys=self.output_label_key, argmax=True)(data)
        invert = Invertd(keys=self.output_label_key, transform=Compose(list(pre_transforms)), orig_keys="image",
                         nearest_interp=True, to_tensor=True)
        return invert(data)

    def post_transforms(self, data=None) -> Sequence[Callable]:
        s = self.settings
        return [
            LiverTumorPostprocessd(self.output_label_key, s.tumour_margin_mm, s.min_tumour_ml),
            SqueezeDimd(keys=self.output_label_key, dim=0),
            LesionReportd(self.output_label_key, self.output_json_key),
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
        self._loaded[str(device)] = (network, path, mtime)
        return network

    def clear_cache(self):
        self._loaded.clear()
        super().clear_cache()
