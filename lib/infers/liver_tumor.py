"""InferTask `liver_tumor`: the path of one study, top to bottom.

load (and check, in the stored voxel type) -> find the liver at 4 mm and crop the study to it, in its own voxels
(the cascade; the whole volume when there is no locator or the liver is not found or at the border) -> orient RAS ->
resample to the model's spacing -> HU window -21..189 to 0..1 -> crop to the body -> measure the noise (and smooth a
study noisier than the model has learnt) -> sliding-window UNet (CUDA with AMP, or CPU with bf16 where it has it,
channels-last; when asked and the liver it finds is enhanced, a second pass on the study darker, averaged with
the first but where it called tumour) -> argmax (tumours the model is unsure of dropped, when asked) -> back to the
crop's grid (the inverse of the pre-processing, nearest neighbour, done once on the label) -> when asked, what lies
far from the locator's liver dropped (the liver gate) -> clean up (one liver, tumour near it, no specks) -> when
asked, the second reader (a lesion network at 1 mm over the liver, and of both networks' tumours those a reader
keeps) -> report volumes and lesions -> paste into the study's shape -> write, with its affine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import Compose, CopyItemsd, Invertd, SqueezeDimd
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monailabel.utils.others.generic import file_ext

from ..cascade.crop import CropToLiverd, PasteIntoStudyd
from ..cascade.gate import NearCoarseLiverd
from ..cascade.locate import Locator, load_locator
from ..data.nifti import nifti_image
from ..errors import ModelUnavailable
from ..model.autocast import AutocastInferer, autocast_dtype
from ..model.checkpoint import load_network, read_card
from ..model.liver_from import LiverFrom
from ..model.network import LABELS, build_unet
from ..reader.lesion_network import DENOISE_ABOVE_HU, DENOISE_SIGMA_MM, SPACING_MM, load_lesion_network
from ..reader.transform import SecondReaderd
from ..reader.trees import Trees
from ..scoring.signals import foreground_entropy
from ..settings import Settings, request_options
from ..transforms.denoise import SmoothNoisyd
from ..transforms.image_path import RestoreImagePathd, StashImagePathd
from ..transforms.load import LoadCTd
from ..transforms.postprocess import (
    CleanUp,
    LiverTumorPostprocessd,
    channel_argmax,
    tumour_biased,
    unsure_tumours_dropped,
)
from ..transforms.preprocess import fitted_roi, preprocessing
from ..transforms.report import LesionReportd
from .second_pass import IntensityShiftInferer, ShiftRule

SECOND_READER_CT = "second_reader_ct"  # the region's CT, kept for the second reader


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
        self._readers: dict[str, tuple[torch.nn.Module, Trees]] = {}

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

    # ---- the request: every option read as --conf reads it, a bad one a 422 before any work
    def __call__(self, request, callbacks=None):
        return super().__call__({**request, **self._options(request)}, callbacks)

    def _options(self, data: dict[str, Any] | None) -> dict[str, Any]:
        """The infer options of a request (or of the data a stage gets), typed; the task's config fills the rest."""
        return request_options({**self._config, **(data or {})}, "infer", self.settings)

    # ---- the stages
    def pre_transforms(self, data=None) -> Sequence[Callable]:
        data = data or {}
        options = self._options(data)
        cascade = options["cascade"]
        return [StashImagePathd(), LoadCTd("image", dtype=None, max_mb=self.settings.max_image_mb,
                                           json_key=self.output_json_key),
                CropToLiverd("image", lambda: self._locator(data) if cascade else "cascade off in the request"),
                *([CopyItemsd("image", names=SECOND_READER_CT)] if options["second_reader"] else []),
                *preprocessing(self.settings.spacing),
                SmoothNoisyd("image", self.output_json_key, options["denoise_above_hu"], options["denoise_sigma_mm"],
                             self.settings.spacing)]

    def inferer(self, data=None) -> Inferer:
        data = data or {}
        options = self._options(data)
        device, roi, overlap = data.get("device", "cpu"), options["roi_size"], options["sw_overlap"]
        image = data.get(self.input_key)
        if image is not None and options["fit_windows"]:
            roi = fitted_roi(tuple(image.shape[1:]), roi, overlap)
        inner = SlidingWindowInferer(roi_size=roi, overlap=overlap, sw_batch_size=options["sw_batch_size"],
                                     mode="gaussian", sw_device=device, device=device, cache_roi_weight_map=True)
        rule = ShiftRule(options["intensity_tta_hu"], options["intensity_tta_liver_hu"],
                         options["dark_liver_tta_hu"], options["dark_liver_hu"], options["dark_liver_max_ml"])
        if rule:
            def report(decision: dict[str, Any]) -> None:  # into the result's JSON
                data[self.output_json_key] = {**data.get(self.output_json_key, {}), "second_pass": decision}

            inner = IntensityShiftInferer(inner, rule, self.settings.spacing, report)
        return AutocastInferer(inner, torch.device(device).type, self._dtype(data))

    def _dtype(self, data: dict[str, Any]) -> torch.dtype | None:
        return autocast_dtype(data.get("device", "cpu"), self.settings.amp, self._options(data)["cpu_bf16"])

    def run_invert_transforms(self, data: dict[str, Any], pre_transforms, names):
        """Argmax, then undo crop, resampling and orientation with MONAI's Invertd, once, on the label."""
        pred = data[self.output_label_key]
        options = self._options(data)
        logits = tumour_biased(torch.as_tensor(pred), options["tumour_logit_bias"])
        labels, dropped = unsure_tumours_dropped(logits, channel_argmax(logits), options["min_tumour_probability"],
                                                 options["max_tumour_background"])
        # with a filter on, nothing silently lost: what it took, before the clean-up, on the working grid
        if dropped is not None:
            voxel_ml = float(np.prod(self.settings.spacing)) / 1000.0
            data[self.output_json_key] = {**data.get(self.output_json_key, {}), "tumours_dropped": [
                {"volume_ml": round(d.pop("voxels") * voxel_ml, 3), **d} for d in dropped]}
        if options["uncertainty"]:
            data[self.output_json_key] = {**data.get(self.output_json_key, {}),
                                          "uncertainty": foreground_entropy(torch.as_tensor(pred), labels[0])}
        data[self.output_label_key] = MetaTensor(labels, meta=pred.meta) if isinstance(pred, MetaTensor) else labels
        invert = Invertd(keys=self.output_label_key, transform=Compose(list(pre_transforms)), orig_keys="image",
                         nearest_interp=True, to_tensor=True)
        return invert(data)

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        """NIfTI results written with nibabel, the rest by MONAI Label's writer. MONAI Label writes NIfTI through
        ITK; this writes the same label on the same grid (tests/test_infer_geometry.py) and lets inference run
        where ITK is not installed (the GPU machine's image: scripts/device-check). 3D Slicer's .nrrd results are
        written as MONAI Label writes them."""
        ext = str(extension or data.get("result_extension") or file_ext(data.get("image_path") or "")).lower()
        if ext not in (".nii", ".nii.gz") or not data.get("result_write_to_file", True):
            return super().writer(data, extension, dtype)
        label = data[self.output_label_key]
        meta = data.get(f"{self.output_label_key}_meta_dict") or {}
        affine = meta.get("affine") if meta.get("affine") is not None else label.affine
        # (not MetaTensor.array, which makes a C-ordered copy)
        array = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        # in NIfTI's order (first axis fastest; PasteIntoStudyd makes it so): nibabel transposes others as it writes
        array = array.astype(np.dtype(dtype or data.get("result_dtype") or np.uint8), order="F")
        out = tempfile.NamedTemporaryFile(suffix=ext, delete=False).name
        nib.save(nifti_image(array, np.asarray(affine, dtype=float)), out)
        return out, data.get(self.output_json_key, {})

    def post_transforms(self, data=None) -> Sequence[Callable]:
        s, data = self.settings, data or {}
        options = self._options(data)
        # the shipped model's input is the lesion network's when both were made alike: not made a second time
        same_input = (tuple(s.spacing) == SPACING_MM and options["denoise_above_hu"] == DENOISE_ABOVE_HU
                      and options["denoise_sigma_mm"] == DENOISE_SIGMA_MM)
        reader = [SecondReaderd(self.output_label_key, SECOND_READER_CT, self.output_json_key,
                                lambda: self._second_reader(data), options["second_reader_threshold"],
                                self._dtype(data), self.input_key if same_input else None)
                  ] if options["second_reader"] else []
        return [
            NearCoarseLiverd(self.output_label_key, self.output_json_key, options["liver_gate_mm"]),
            LiverTumorPostprocessd(self.output_label_key,
                                   CleanUp.of(s, min_liver_around=options["min_liver_around_tumour"])),
            SqueezeDimd(keys=self.output_label_key, dim=0),
            *reader,
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
        if self.settings.liver_model is not None:
            network = LiverFrom(network, load_network(self.settings.liver_model, self.settings.dropout, device))
        if self.settings.channels_last:
            network = network.to(memory_format=torch.channels_last_3d)
        self._loaded[str(device)] = (network, path, mtime)
        return network

    def _second_reader(self, data: dict[str, Any]) -> tuple[torch.nn.Module, Trees]:
        """The lesion network on the request's device and the reader, loaded once."""
        device = str(data.get("device", "cpu"))
        if device not in self._readers:
            folder = Path(self.settings.second_reader_path)
            for name in ("lesion_net.pt", "reader.json"):
                if not (folder / name).exists():
                    raise ModelUnavailable(f"second_reader: no {name} in {folder} (--conf second_reader_path)")
            self._readers[device] = (load_lesion_network(folder / "lesion_net.pt", device,
                                                         self.settings.channels_last),
                                     Trees(folder / "reader.json"))
        return self._readers[device]

    def _locator(self, data: dict[str, Any]) -> Locator | str:
        """The locator on the request's device, loaded once; or why there is none (the plain path)."""
        path = self.settings.locator
        if path is None:
            return "no locator (--conf locator_path none)"
        device, dtype = str(data.get("device", "cpu")), self._dtype(data)
        key = f"{device}/{dtype}"
        if key not in self._locators:
            located = load_locator(path, device, dtype, self.settings.locator_margin_mm)
            if isinstance(located, str):
                return located
            self._locators[key] = located
        return self._locators[key]

    def clear_cache(self):
        self._loaded.clear()
        self._locators.clear()
        super().clear_cache()

