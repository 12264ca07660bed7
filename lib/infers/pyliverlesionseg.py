"""InferTask `pyliverlesionseg`: pyliverlesionseg's networks, trained on patients' CT, the path of one study top to
bottom.

load (and check, in the stored voxel type) -> the liver network's field (489 x 408 x 408 mm) around the liver the
app's locator finds, cut in the study's own voxels (the whole study where it is smaller; its centre where no liver
is found) -> orient RAS -> the liver stage (resample to 1.5 mm, median filter, 3 mm, window -200..200 HU, one
window at the centre, threshold, opening, largest part, back to the voxels) -> the lesion stage (1 x 1 x 3 mm,
everything beyond the liver's neighbourhood blanked, windows over it, threshold, back to the voxels) -> label
(1 liver, 2 lesion) -> back to the crop's orientation -> report volumes and lesions -> paste into the study's shape
-> write, with its affine.

The package's own steps are kept (lib.transforms.pyliverlesionseg). Two are the app's: the region (the package's
body-crop heuristic cut the liver on both real test CTs), and the lesion windows: by default 100 x 100 x 42
outputs spread evenly over the liver instead of 92 x 84 x 42 flush with its start, a third of the windows for the
same Dice (docs/pyliverlesionseg.md; `lesion_window 92,84,42` and `lesion_spread false` give the package's).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, Orientationd, SqueezeDimd
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from ..cascade.crop import CropToLiverd, PasteIntoStudyd
from ..cascade.locate import Locator, load_locator
from ..errors import ModelUnavailable
from ..model.autocast import autocast_dtype
from ..model.checkpoint import read_card
from ..model.generalized_unet import GeneralizedUNet, predict
from ..model.network import LABELS
from ..model.pyliverlesionseg import LESION, LIVER, load_networks
from ..settings import Settings, request_options
from ..transforms import pyliverlesionseg as stages
from ..transforms.image_path import RestoreImagePathd, StashImagePathd
from ..transforms.load import LoadCTd
from ..transforms.report import LesionReportd

FIELD_MM = tuple(n * v for n, v in zip(LIVER.output, LIVER.voxel_mm))  # what the liver network sees: 489 x 408 x 408


class PyLiverLesionSegInfer(BasicInferTask):
    def __init__(self, path: Path | None, settings: Settings, description: str) -> None:
        super().__init__(
            path=[str(path)] if path else [],
            network=None,
            type=InferType.SEGMENTATION,
            labels=LABELS,
            dimension=3,
            description=description,
            config={"cpu_bf16": settings.cpu_bf16, "cascade": settings.locator is not None,
                    "lesion_window": list(settings.lesion_window), "lesion_spread": settings.lesion_spread},
        )
        self.settings, self.weights = settings, path
        self._networks: dict[str, tuple[dict[str, GeneralizedUNet], float]] = {}
        self._locators: dict[str, Locator] = {}

    # ---- what clients see
    def info(self) -> dict[str, Any]:
        info = super().info()
        available = self.weights is not None and self.weights.exists()
        card = read_card(self.weights) if available else {}
        info["model"] = {
            "available": available, "path": str(self.weights) if available else None,
            "trained_on": card.get("trained_on"), "card": card,
            "status": "ready" if available else "not converted yet: run `liver-tumor pyliverlesionseg-model` "
                                                "(make serve runs it when the package index is reachable)"}
        return info

    def is_valid(self) -> bool:
        return True  # listed in /info even before its weights are converted, which /info then says

    # ---- the request
    def __call__(self, request, callbacks=None):
        return super().__call__({**request, **self._options(request)}, callbacks)

    def _options(self, data: dict[str, Any] | None) -> dict[str, Any]:
        return request_options({**self._config, **(data or {})}, "infer", self.settings)

    # ---- the stages
    def pre_transforms(self, data=None) -> Sequence[Callable]:
        data = data or {}
        cascade = self._options(data)["cascade"]
        return [StashImagePathd(), LoadCTd("image", dtype=None, max_mb=self.settings.max_image_mb,
                                           json_key=self.output_json_key),
                CropToLiverd("image", lambda: self._locator(data) if cascade else "cascade off in the request"),
                EnsureChannelFirstd(keys="image"), Orientationd(keys="image", axcodes="RAS")]

    def run_inferer(self, data: dict[str, Any], convert_to_batch=True, device="cuda"):
        """Both networks with the package's steps around them, on the RAS crop; the label keeps the crop's meta."""
        networks = self._load(device)
        options = self._options(data)
        dtype = autocast_dtype(device, self.settings.amp, options["cpu_bf16"])
        image = data[self.input_key]
        hu = np.asarray(image.as_tensor()[0].float().cpu())
        voxel_mm = tuple(float(v) for v in image.pixdim[:3])
        times = {}
        started = time.perf_counter()
        window = stages.liver_input(hu, voxel_mm, LIVER.voxel_mm)
        liver = stages.liver_output(predict(networks["liver"], window, LIVER.output, True, device, dtype), hu.shape)
        times["liver_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        crop, box, grid = stages.lesion_input(hu, liver, voxel_mm, LESION.voxel_mm)
        lesions = np.zeros(hu.shape, bool)
        if crop.size:
            probability = predict(networks["lesion"], crop, options["lesion_window"], False, device, dtype,
                                  spread=options["lesion_spread"])
            lesions = stages.lesion_output(probability, box, grid, hu.shape)
        times["lesion_s"] = round(time.perf_counter() - started, 2)
        label = liver.astype(np.uint8)
        label[lesions] = 2
        data[self.output_label_key] = MetaTensor(torch.from_numpy(label[None].astype(np.float32)), meta=image.meta,
                                                 applied_operations=image.applied_operations)
        data[self.output_json_key] = {**data.get(self.output_json_key, {}), "stages": times}
        return data

    def run_invert_transforms(self, data: dict[str, Any], pre_transforms, names):
        """The label back to the crop's own orientation (MONAI's Invertd, nearest neighbour)."""
        invert = Invertd(keys=self.output_label_key, transform=Compose(list(pre_transforms)), orig_keys="image",
                         nearest_interp=True, to_tensor=True)
        return invert(data)

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return [
            SqueezeDimd(keys=self.output_label_key, dim=0),
            LesionReportd(self.output_label_key, self.output_json_key),
            PasteIntoStudyd(self.output_label_key, self.output_json_key),
            RestoreImagePathd(),
        ]

    # ---- the networks, loaded once per device
    def _load(self, device: str) -> dict[str, GeneralizedUNet]:
        if self.weights is None or not self.weights.exists():
            raise ModelUnavailable("the pyliverlesionseg networks are not converted yet: run `liver-tumor "
                                   "pyliverlesionseg-model` (it fetches pyliverlesionseg 0.3 from PyPI)")
        mtime = self.weights.stat().st_mtime
        cached = self._networks.get(str(device))
        if cached is None or cached[1] != mtime:
            networks = load_networks(self.weights, device)
            if torch.device(device).type == "cpu" and self.settings.channels_last:
                networks = {k: n.to(memory_format=torch.channels_last_3d) for k, n in networks.items()}
            self._networks[str(device)] = (networks, mtime)
        return self._networks[str(device)][0]

    def _locator(self, data: dict[str, Any]) -> Locator | str:
        """The app's locator, giving the liver network's field around the liver; or why there is none."""
        path = self.settings.locator
        if path is None:
            return "no locator (--conf locator_path none)"
        device = str(data.get("device", "cpu"))
        dtype = autocast_dtype(device, self.settings.amp, self._options(data)["cpu_bf16"])
        key = f"{device}/{dtype}"
        if key not in self._locators:
            located = load_locator(path, device, dtype, 0.0, extent_mm=FIELD_MM)  # type: ignore[arg-type]
            if isinstance(located, str):
                return located
            self._locators[key] = located
        return self._locators[key]

    def clear_cache(self):
        self._networks.clear()
        self._locators.clear()
        super().clear_cache()
