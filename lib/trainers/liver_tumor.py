"""TrainTask `liver_tumor`: the seed's recipe on MONAI Label's training engine.

Data: the datastore's final labels (and, if configured, a Decathlon Task03 folder). Pre-processing as at
inference; random 96^3 crops centred on foreground or background 1:1, flips, 90-degree rotations, intensity
shift. Dice loss (or Dice + cross-entropy), Adam 5e-4, AMP on CUDA (bf16 autocast on CPUs that have it).
Validation with sliding windows reports Dice per class. MONAI Label runs it on several GPUs when there are.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
from ignite.handlers import EarlyStopping
from monai.data import partition_dataset
from monai.engines.workflow import Events
from monai.handlers import MeanDice, from_engine, stopping_fn_from_metric
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.losses import DiceCELoss, DiceLoss
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    EnsureTyped,
    LoadImaged,
    RandCropByLabelClassesd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandShiftIntensityd,
    SelectItemsd,
)
from monai.utils import set_determinism
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.basic_train import BasicTrainTask, Context

from ..configs.settings import Settings, crop_ratios
from ..data.decathlon import datalist as decathlon_datalist
from ..errors import InvalidInput
from ..infers.autocast import AutocastInferer, autocast_dtype, cpu_has_bf16
from ..infers.liver_tumor import preprocessing
from ..model.network import LABELS, NUM_CLASSES, build_unet
from .publish import PublishBest

logger = logging.getLogger(__name__)
CHOICES = ("dataset", "dataloader", "tracking")  # config lists whose first item is the default


class SelectClass:
    """Output transform for a per-class Dice: channel c of the one-hot predictions and labels."""

    def __init__(self, c: int) -> None:
        self.c = c

    def __call__(self, output):
        preds, labels = from_engine(["pred", "label"])(output)
        return [p[self.c : self.c + 1] for p in preds], [y[self.c : self.c + 1] for y in labels]


class LiverTumorTrain(BasicTrainTask):
    def __init__(self, model_dir: str, settings: Settings, publish_path: str,
                 current_model: Callable[[], str | None], card: dict, description: str) -> None:
        self.settings = settings
        self._current_model = current_model
        self._card = card
        super().__init__(
            model_dir=model_dir,
            description=description,
            config={
                "max_epochs": settings.max_epochs,
                "val_split": settings.val_split,
                "learning_rate": settings.learning_rate,
                "loss": ["dice", "dicece"] if settings.loss == "dice" else ["dicece", "dice"],
                "crop_size": settings.crop_size,
                "crops_per_volume": settings.crops_per_volume,
                "crop_ratios": settings.crop_ratios,
                "dataset": ["CacheDataset", "Dataset", "PersistentDataset"],
                "dataloader": ["ThreadDataLoader", "DataLoader"],
                # MLflow (MONAI Label's default when tracking is on) no longer takes a file store: off by default
                "tracking": ["None", "mlflow"],
                "cpu_bf16": cpu_has_bf16(),
                "decathlon_dir": settings.decathlon_dir,
                "val_interval": 1,
                "seed": -1,
            },
            amp=settings.amp and torch.cuda.is_available(),
            publish_path=publish_path,
            labels=LABELS,
            load_strict=True,
        )

    # ---- request
    def __call__(self, request: dict, datastore: Datastore):
        req = dict(request)
        for key in (*CHOICES, "loss"):
            value = req.get(key, self._config.get(key))
            req[key] = value[0] if isinstance(value, list) else value
        if req["loss"] not in ("dice", "dicece"):
            raise InvalidInput(f"loss must be dice or dicece, got {req['loss']!r}")
        try:
            crop_ratios(str(req.get("crop_ratios") or ""))
        except ValueError as e:
            raise InvalidInput(str(e)) from None
        self._val_interval = int(req.get("val_interval", self._config["val_interval"]))
        seed = int(req.get("seed", -1))
        if seed >= 0:
            set_determinism(seed=seed)
        return super().__call__(req, datastore)

    def pre_process(self, request: dict, datastore: Datastore) -> list[dict]:
        data = datastore.datalist()
        decathlon = request.get("decathlon_dir")
        if decathlon:
            data += decathlon_datalist(Path(decathlon))
        if len(data) < 2:
            raise InvalidInput(f"training needs at least 2 studies with final labels, the datastore has {len(data)}")
        return data

    def partition_datalist(self, context: Context, shuffle: bool = False):
        """At least one study for validation, whatever val_split rounds to."""
        val_split = float(context.request.get("val_split", self.settings.val_split))
        n_val = max(1, int(round(len(context.datalist) * val_split)))
        train, val = partition_dataset(context.datalist, ratios=[len(context.datalist) - n_val, n_val])
        return train, val

    # ---- model
    def network(self, context: Context):
        return build_unet(self.settings.dropout)

    def optimizer(self, context: Context):
        return torch.optim.Adam(context.network.parameters(), lr=float(context.request.get("learning_rate")))

    def loss_function(self, context: Context):
        if context.request.get("loss") == "dicece":
            return DiceCELoss(to_onehot_y=True, softmax=True)
        return DiceLoss(to_onehot_y=True, softmax=True)

    def lr_scheduler_handler(self, context: Context):
        return None  # the seed trains at a constant learning rate

    def load_path(self, output_dir: str, pretrained: bool = True) -> str | None:
        """Fine-tune from the model in use (published, else pretrained); from scratch when pretrained is false."""
        return self._current_model() if pretrained else None

    # ---- data
    def train_pre_transforms(self, context: Context):
        size = (int(context.request.get("crop_size")),) * 3
        crops = int(context.request.get("crops_per_volume"))
        ratios = crop_ratios(str(context.request.get("crop_ratios") or ""))
        if ratios is None:  # the seed's: centred on foreground (liver or tumour) or background, 1:1
            crop = RandCropByPosNegLabeld(keys=("image", "label"), label_key="label", spatial_size=size, pos=1, neg=1,
                                          num_samples=crops, image_key="image", image_threshold=0, allow_smaller=True)
        else:  # per class, so that small tumours are seen often enough to be learnt
            crop = RandCropByLabelClassesd(keys=("image", "label"), label_key="label", spatial_size=size,
                                           ratios=list(ratios), num_classes=NUM_CLASSES, num_samples=crops,
                                           allow_smaller=True, warn=False)
        return [
            LoadImaged(keys=("image", "label")),
            *preprocessing(self.settings.spacing, keys=("image", "label"), label_key="label"),
            EnsureTyped(keys="label", dtype=torch.uint8),
            crop,
            RandFlipd(keys=("image", "label"), spatial_axis=0, prob=0.1),
            RandFlipd(keys=("image", "label"), spatial_axis=1, prob=0.1),
            RandFlipd(keys=("image", "label"), spatial_axis=2, prob=0.1),
            RandRotate90d(keys=("image", "label"), prob=0.1, max_k=3),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            EnsureTyped(keys="label", dtype=torch.float32),
            SelectItemsd(keys=("image", "label")),
        ]

    def val_pre_transforms(self, context: Context):
        return [
            LoadImaged(keys=("image", "label")),
            *preprocessing(self.settings.spacing, keys=("image", "label"), label_key="label"),
            SelectItemsd(keys=("image", "label")),
        ]

    def train_post_transforms(self, context: Context):
        return [
            Activationsd(keys="pred", softmax=True),
            AsDiscreted(keys=("pred", "label"), argmax=(True, False), to_onehot=NUM_CLASSES),
        ]

    # ---- inference during training
    def _autocast(self, context: Context):
        device = context.device
        cpu_bf16 = str(context.request.get("cpu_bf16", False)).lower() == "true"
        return device.type, autocast_dtype(device, False, cpu_bf16)  # CUDA AMP is the engine's own

    def train_inferer(self, context: Context):
        return AutocastInferer(SimpleInferer(), *self._autocast(context))

    def val_inferer(self, context: Context):
        inner = SlidingWindowInferer(roi_size=self.settings.roi_size, overlap=self.settings.sw_overlap,
                                     sw_batch_size=1, mode="gaussian")
        return AutocastInferer(inner, *self._autocast(context))

    def val_additional_metrics(self, context: Context):
        return {f"val_{name}_dice": MeanDice(output_transform=SelectClass(c), include_background=True)
                for name, c in LABELS.items()}

    # ---- publishing
    def finalize(self, context: Context):
        if context.local_rank == 0:
            card = {**self._card, "trained_on": "this datastore's final labels"
                    + (" and a Decathlon folder" if context.request.get("decathlon_dir") else ""),
                    "run_id": context.run_id, "started_from": self.load_path("", bool(context.request["pretrained"]))}
            PublishBest(self._stats_path, self._publish_path, context.trainer, context.evaluator, context.network,
                        context.start_ts, self.VAL_METRIC_MEAN_DICE, card,
                        measure_baseline=bool(card["started_from"])).attach()
        patience = int(context.request.get("early_stop_patience", 0))
        if patience > 0 and context.evaluator is not None:
            context.evaluator.add_event_handler(Events.EPOCH_COMPLETED, EarlyStopping(
                patience=patience, score_function=stopping_fn_from_metric(self.VAL_METRIC_MEAN_DICE),
                trainer=context.trainer))
