"""TrainTask `liver_tumor`: the seed's recipe on MONAI Label's training engine.

Data: the datastore's final labels, and, if configured, a Decathlon Task03 folder (its training subset trains, its
validation subset validates, its test subset is never used). Pre-processing as at inference, run once per study
and cached (lib.data.study_cache); random 96^3 crops centred on foreground or background 1:1, flips, 90-degree
rotations, intensity shift, on the GPU when there is one. Dice + cross-entropy (or the seed's Dice), optionally
blob loss and a cross-entropy per lesion, Adam 5e-4, AMP on CUDA (fp16 with a gradient scaler, or bf16), bf16
autocast on CPUs that have it. Validation with sliding windows reports Dice per class.

One code path for one process, MONAI Label's one process per GPU, and torchrun across machines
(lib.distributed): each rank trains on its own shard, validation Dice is gathered, rank 0 alone writes.
"""

from __future__ import annotations

import logging
import multiprocessing
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from ignite.handlers import EarlyStopping
from monai.data import DataLoader, Dataset, ThreadDataLoader, partition_dataset
from monai.engines.workflow import Events
from monai.handlers import MeanDice, stopping_fn_from_metric
from monai.inferers import SimpleInferer
from monai.losses import DiceCELoss, DiceLoss
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    ClassesToIndicesd,
    Compose,
    DeleteItemsd,
    EnsureTyped,
    LoadImaged,
    RandCropByLabelClassesd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandShiftIntensityd,
    SelectItemsd,
    SpatialPadd,
)
from monai.utils import set_determinism
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.basic_train import BasicTrainTask, Context

from .. import distributed
from ..data.atomic import save_json
from ..data.decathlon import datalist as decathlon_datalist
from ..data.study_cache import StudyCache, prune
from ..errors import InvalidInput
from ..model.autocast import AutocastInferer, autocast_dtype, cpu_has_bf16, training_dtype
from ..model.checkpoint import load_network
from ..model.network import LABELS, NUM_CLASSES, STRIDES, build_unet
from ..settings import LR_SCHEDULES, NO_FLOOR_HU, PUBLISH_METRICS, Settings, crop_ratios, request_options
from ..transforms.augment import augmentations
from ..transforms.liver_attenuation import RandBrightLiverd, RandFattyLiverd
from ..transforms.postprocess import CleanUp
from ..transforms.preprocess import HU_WINDOW, WINDOW_SPAN_HU, preprocessing
from ..transforms.synthesis import SynthesizeTumoursd
from . import pseudo_labels, rank_report, resume
from .averaging import WeightAverage
from .blob_loss import BlobLoss
from .hard_centres import AddHardCentresd, centre_table, hard_centres
from .lesion_centres import LesionBalancedCentresd
from .lr_schedule import CosineLearningRate
from .publish import PublishBest
from .validation import (
    FittedWindows,
    GlobalTumourDice,
    LiverRegiond,
    SelectClass,
    Validated,
    lesion_metrics,
)

logger = logging.getLogger(__name__)
# Where crops by class may be centred, per class, found once per study with its pre-processing and cached (MONAI's
# ClassesToIndicesd): found in the whole study at every step, they took 0.19-0.44 s a step on 1 mm training studies
# on this CPU, against 2-7 ms from the cache, and the study's random transforms bounded the H200's steps (15 s for
# 32 studies). Evenly spaced over the class, at most this many a class (1.2 MB a study).
CROP_CENTRES = "label_cls_indices"
MAX_CROP_CENTRES = 50_000
# config lists whose first item is the default
CHOICES = ("loss", "lr_schedule", "dataset", "dataloader", "tracking", "amp_dtype", "publish_metric")


def _lesion_balanced(context: Context | None) -> bool:
    """Whether the run centres its tumour crops by lesion (lesion_balanced_crops, with crops by class)."""
    request = getattr(context, "request", None) or {}
    return bool(request.get("lesion_balanced_crops")) and crop_ratios(request.get("crop_ratios", "")) is not None


def _choices(chosen: str, others: tuple[str, ...]) -> list[str]:
    """A config list as MONAI Label shows options to clients: the default first."""
    return [chosen, *(o for o in others if o != chosen)]


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
                "lr_schedule": _choices(settings.lr_schedule, LR_SCHEDULES),
                "loss": _choices(settings.loss, ("dicece", "dice")),
                "crop_size": settings.crop_size,
                "crops_per_volume": settings.crops_per_volume,
                "train_batch_size": settings.train_batch_size,  # MONAI Label's key, its default 1
                "crop_ratios": settings.crop_ratios,
                "lesion_balanced_crops": settings.lesion_balanced_crops,
                "synth_prob": settings.synth_prob,
                "synth_lesions": list(settings.synth_lesions),
                "synth_size_mm": list(settings.synth_size_mm),
                "tumour_weight": settings.tumour_weight,
                "blob_weight": settings.blob_weight,
                "lesion_ce_weight": settings.lesion_ce_weight,
                "publish_metric": _choices(settings.publish_metric, PUBLISH_METRICS),
                "fatty_liver_prob": settings.fatty_liver_prob,
                "fatty_liver_hu": list(settings.fatty_liver_hu),
                "fatty_liver_floor_hu": settings.fatty_liver_floor_hu,
                "bright_liver_prob": settings.bright_liver_prob,
                "bright_liver_hu": list(settings.bright_liver_hu),
                "noise_prob": settings.noise_prob,
                "noise_hu": settings.noise_hu,
                "augment_prob": settings.augment_prob,
                # StudyCache: pre-processed once per study, on disk between runs, in memory up to cache_mb
                "dataset": ["StudyCache", "Dataset"],
                "cache_mb": settings.cache_mb,
                "cache_workers": settings.cache_workers,
                "loader_workers": settings.loader_workers,
                "weight_average": settings.weight_average,
                "dataloader": ["ThreadDataLoader", "DataLoader"],
                "amp_dtype": _choices(settings.amp_dtype, ("float16", "bfloat16")),
                "resume": False,
                # MLflow (MONAI Label's default when tracking is on) no longer takes a file store: off by default
                "tracking": ["None", "mlflow"],
                "cpu_bf16": settings.cpu_bf16 and cpu_has_bf16(),  # the --conf option, where the CPU has bf16
                "decathlon_dir": settings.decathlon_dir,
                "val_interval": 1,
                "seed": -1,
                "early_stop_patience": 0,  # MONAI Label's -1 means the same, never, and is no patience
            },
            amp=settings.amp,
            publish_path=publish_path,
            labels=LABELS,
            load_strict=True,
        )

    # ---- request
    def options(self, request: dict) -> dict:
        """Every train option of the request read as --conf reads it (InvalidInput, a 422, naming a bad one), over
        the task's config (its lists' first items are the defaults)."""
        config = {k: v[0] if k in CHOICES and isinstance(v, list) else v for k, v in self._config.items()}
        return request_options({**config, **request}, "train", self.settings)

    def __call__(self, request: dict, datastore: Datastore):
        req = {**request, **self.options(request)}
        self._val_interval = req["val_interval"]
        if req["seed"] >= 0:
            set_determinism(seed=req["seed"])
        launch = distributed.torchrun_launch()
        if launch is None:
            return super().__call__(req, datastore)
        return self._torchrun(launch, req, datastore)

    def _torchrun(self, launch: distributed.Launch, request: dict, datastore: Datastore) -> dict:
        """This process is one of torchrun's: join the group and train this rank's part (MONAI Label's own
        multi-GPU path would spawn more processes)."""
        req = {**self._config, **request, "multi_gpu": False}  # the group is joined here, not by MONAI Label
        asked = req.get("device") or "cuda"
        asked = str(asked[0] if isinstance(asked, list) else asked)
        wanted = torch.device("cuda" if torch.cuda.is_available() and asked.startswith("cuda") else "cpu")
        device = distributed.start(launch, wanted)
        try:
            req["device"] = device
            req["run_id"] = distributed.from_rank0(datetime.now().strftime("%Y%m%d_%H%M%S"))
            datalist, error = None, None
            if launch.rank == 0:
                try:
                    datalist = self.pre_process(req, datastore)
                except InvalidInput as e:  # every rank must hear of it, or the others wait for data forever
                    error = e.detail
            datalist, error = distributed.from_rank0((datalist, error))
            if error:
                raise InvalidInput(error)
            result = self.train(launch.rank, launch.world_size, req, datalist)
            if launch.rank == 0:
                self.cleanup(req)
            return result
        finally:
            torch.distributed.destroy_process_group()

    def pre_process(self, request: dict, datastore: Datastore) -> list[dict]:
        """The datastore's final labels, then a Decathlon folder's training and validation subsets (tagged)."""
        data = [dict(d, subset="datastore") for d in datastore.datalist()] if datastore is not None else []
        decathlon = request.get("decathlon_dir")
        if decathlon:
            for subset in ("train", "validation"):
                data += [dict(d, subset=subset) for d in decathlon_datalist(Path(decathlon), "seed", subset)]
        # MONAI Label's own request key: studies to validate on instead of a share of the datastore's
        data += [dict(d, subset="validation") for d in request.get("val_ds") or []]
        if len(data) < 2:
            raise InvalidInput(f"training needs at least 2 studies with final labels, the datastore has {len(data)}")
        if request.get("pseudo_labels") and datastore is not None:
            data += pseudo_labels.datalist(datastore)  # they train, never validate
        return data

    def partition_datalist(self, context: Context, shuffle: bool = False):
        """Datastore studies: at least one for validation, whatever val_split rounds to, unless the request names
        its validation studies (val_ds). Decathlon studies: its split's training and validation subsets.
        Pseudo-labels (pseudo_labels): training only, drawn pseudo_label_weight times as often as final labels."""
        ours = [d for d in context.datalist if d.get("subset", "datastore") == "datastore"]
        train = [d for d in context.datalist if d.get("subset") == "train"]
        val = [d for d in context.datalist if d.get("subset") == "validation"]
        if ours and context.request.get("val_ds"):
            train = ours + train
        elif ours:
            val_split = context.request["val_split"]
            n_val = max(1, int(round(len(ours) * val_split))) if len(ours) > 1 or not val else 0
            if n_val >= len(ours) and not train:
                n_val = len(ours) - 1
            if n_val:
                mine_train, mine_val = partition_dataset(ours, ratios=[len(ours) - n_val, n_val])
            else:
                mine_train, mine_val = ours, []
            train, val = mine_train + train, mine_val + val
        pseudo = [d for d in context.datalist if d.get("subset") == "pseudo"]
        if pseudo:
            train = pseudo_labels.weighted(train + pseudo, context.request["pseudo_label_weight"])
        if not train or not val:
            raise InvalidInput(f"training needs at least one study to train on and one to validate on, got "
                               f"{len(train)} and {len(val)}")
        if distributed.rank() == 0:  # which studies validated this run: the app compares its models on them
            save_json([{k: d[k] for k in ("image", "label")} for d in val], self.validation_path)
        return train, val

    @property
    def validation_path(self) -> Path:
        return Path(self._model_dir) / "validation.json"

    # ---- model
    def network(self, context: Context):
        # not channels-last (`channels_last` is for inference only): here its backward pass gave NaN gradients in the
        # bottleneck convolution now and then (2^3 voxels there with 32^3 crops; PyTorch 2.14's oneDNN on this CPU)
        return build_unet(self.settings.dropout)

    def _device(self, context: Context) -> torch.device:
        if isinstance(context.request.get("device"), torch.device) and distributed.torchrun_launch():
            return context.request["device"]  # joined by _torchrun
        return super()._device(context)

    def _create_network_and_optimizer(self, context: Context):
        """As MONAI Label's, but DDP also around CPU networks (gloo), which MONAI Label passes device_ids=[None]."""
        context.network = self.network(context).to(context.device)
        optimizer = self.optimizer(context)
        decay = context.request["weight_average"]
        context.average = WeightAverage(context.network, decay) if decay > 0 else None
        return distributed.wrap(context.network, context.device, self._find_unused_parameters), optimizer

    def optimizer(self, context: Context):
        return torch.optim.Adam(context.network.parameters(), lr=context.request["learning_rate"])

    def loss_function(self, context: Context):
        # Dice over the batch's crops together (batch=True): per crop, a crop without tumour scores a Dice loss of
        # about 1 on the tumour class whatever is predicted there, so false tumour would cost nothing; over the batch
        # it costs the class's precision.
        if context.request["loss"] == "dicece":
            weight = context.request["tumour_weight"]
            loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True,
                              weight=torch.tensor([1.0, 1.0, weight], device=context.device) if weight != 1 else None)
        else:
            loss = DiceLoss(to_onehot_y=True, softmax=True, batch=True)
        blob, lesion_ce = context.request["blob_weight"], context.request["lesion_ce_weight"]
        return BlobLoss(loss, blob, lesion_ce) if blob > 0 or lesion_ce > 0 else loss

    def lr_scheduler_handler(self, context: Context):
        """None for the seed's constant rate; for cosine, set each epoch from the trainer's epoch (lr_schedule)."""
        if context.request["lr_schedule"] != "cosine":
            return None
        return CosineLearningRate(context.optimizer, context.request["learning_rate"], context.max_epochs)

    def load_path(self, output_dir: str, pretrained: bool = True) -> str | None:
        """Fine-tune from the model in use (published, else pretrained); from scratch when pretrained is false."""
        return self._current_model() if pretrained else None

    def _load_checkpoint(self, context: Context, train_handlers: list) -> None:
        if not context.request["resume"]:  # a resumed run starts from its own weights (lib.trainers.resume)
            super()._load_checkpoint(context, train_handlers)

    # ---- data
    def _crop(self, context: Context):
        size = (context.request["crop_size"],) * 3
        crops = context.request["crops_per_volume"]
        ratios = crop_ratios(context.request["crop_ratios"])
        if ratios is None:  # the seed's: centred on foreground (liver or tumour) or background, 1:1
            return RandCropByPosNegLabeld(keys=("image", "label"), label_key="label", spatial_size=size, pos=1, neg=1,
                                          num_samples=crops, image_key="image", image_threshold=0, allow_smaller=True)
        # per class, so that small tumours are seen often enough to be learnt; centres in tissue only, as the seed's
        # negatives are (most background voxels of a body-cropped study are air or fat: crops there teach nothing
        # of the organs next to the liver, and the liver's edges were lost with them)
        return RandCropByLabelClassesd(keys=("image", "label"), label_key="label", spatial_size=size,
                                       ratios=list(ratios), num_classes=len(ratios), num_samples=crops,
                                       indices_key=CROP_CENTRES, allow_smaller=True, warn=False)

    def deterministic_transforms(self, context: Context) -> list:
        """Once per study: load, the seed's pre-processing, the label as uint8 (a quarter of float's memory), and
        where crops by class may be centred (in tissue only, as the seed's negatives are; on tumour, each lesion
        alike with lesion_balanced_crops)."""
        balanced = [LesionBalancedCentresd(CROP_CENTRES, "label", MAX_CROP_CENTRES)] \
            if _lesion_balanced(context) else []
        return [
            LoadImaged(keys=("image", "label")),
            *preprocessing(self.settings.spacing, keys=("image", "label"), label_key="label"),
            EnsureTyped(keys="label", dtype=torch.uint8),
            ClassesToIndicesd(keys="label", num_classes=NUM_CLASSES, image_key="image", image_threshold=0,
                              max_samples_per_class=MAX_CROP_CENTRES),
            *balanced,
            SelectItemsd(keys=("image", "label", CROP_CENTRES)),
        ]

    def random_transforms(self, context: Context) -> list:
        """At every step: crops, the liver made fatty in some (fatty_liver_prob) or an enhanced one brighter
        (bright_liver_prob), synthetic lesions painted into some (synth_prob, relative to the liver as it then is),
        extra noise in some (noise_prob: a noisy scan's liver was called tumour), nnU-Net's augmentations in some
        (augment_prob), flips, rotations, intensity shift; on the GPU when training there, unless loader processes
        run them (loader_workers: CUDA is not theirs to use; the engine moves their crops)."""
        device = getattr(context, "device", None)
        request = context.request
        on_gpu = device is not None and torch.device(device).type == "cuda" and not request.get("loader_workers")
        to_device = [EnsureTyped(keys=("image", "label"), device=device, track_meta=True)] if on_gpu else []
        synthesis = [SynthesizeTumoursd(("image", "label"), request["synth_prob"], request["synth_lesions"],
                                        request["synth_size_mm"])] if request["synth_prob"] > 0 else []
        floor = request["fatty_liver_floor_hu"]
        fatty = [RandFattyLiverd(("image", "label"), request["fatty_liver_prob"], request["fatty_liver_hu"],
                                 floor_hu=None if floor == NO_FLOOR_HU else floor)
                 ] if request["fatty_liver_prob"] > 0 else []
        bright = [RandBrightLiverd(("image", "label"), request["bright_liver_prob"], request["bright_liver_hu"])
                  ] if request["bright_liver_prob"] > 0 else []
        noise = [RandGaussianNoised(keys="image", prob=request["noise_prob"],
                                    std=request["noise_hu"] / WINDOW_SPAN_HU)] if request["noise_prob"] > 0 else []
        # a study smaller than a crop gives smaller crops (allow_smaller): padded to the crop, which the network's
        # strides divide (an edge they do not, such as a short scan's 84 slices, stops the run) and which stacks
        size = (request["crop_size"],) * 3
        return [
            *to_device,
            self._crop(context),
            SpatialPadd(keys=("image", "label"), spatial_size=size),
            DeleteItemsd(keys=CROP_CENTRES),
            *fatty,
            *bright,
            *synthesis,
            *noise,
            *augmentations(request["augment_prob"]),
            RandFlipd(keys=("image", "label"), spatial_axis=0, prob=0.1),
            RandFlipd(keys=("image", "label"), spatial_axis=1, prob=0.1),
            RandFlipd(keys=("image", "label"), spatial_axis=2, prob=0.1),
            RandRotate90d(keys=("image", "label"), prob=0.1, max_k=3),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            EnsureTyped(keys="label", dtype=torch.float32),
        ]

    def train_pre_transforms(self, context: Context):
        return [*self.deterministic_transforms(context), *self.random_transforms(context)]

    def val_pre_transforms(self, context: Context):
        return [*self.deterministic_transforms(context), *self.validation_region()]

    def validation_region(self) -> list:
        """Per validation step: the cached crop centres dropped (training's only), and, where inference cascades (a
        locator is configured), the liver's region only, as it segments."""
        s = self.settings
        region = [LiverRegiond(("image", "label"), tuple(s.spacing), s.locator_margin_mm)] if s.locator else []
        return [DeleteItemsd(keys=CROP_CENTRES), *region]

    def cache_signature(self, context: Context | None = None) -> str:
        """Changes whenever the cached pre-processing would: a different spacing or window is another entry."""
        balanced = "/lesion_balanced" if _lesion_balanced(context) else ""
        return (f"liver_tumor/v2/spacing={tuple(self.settings.spacing)}/window={HU_WINDOW}/label=uint8/"
                f"crop_centres={MAX_CROP_CENTRES}{balanced}")

    def cache_dir(self) -> Path:
        """Kept between runs (MONAI Label deletes each run's own cache folder when it ends)."""
        return Path(self._model_dir) / "cache"

    def _dataset(self, context: Context, datalist: list[dict], is_train: bool, replace_rate: float = 0.25):
        datalist = distributed.shard(datalist, train=is_train)
        deterministic = Compose(self.deterministic_transforms(context))
        per_step = self.random_transforms(context) if is_train else self.validation_region()
        ratios = crop_ratios(context.request["crop_ratios"])
        mining = is_train and ratios is not None and len(ratios) == 4
        hard: dict[str, torch.Tensor] = {}  # filled below, once the studies are pre-processed
        if mining:
            per_step = [AddHardCentresd(CROP_CENTRES, hard), *per_step]
        per_step = Compose(per_step) if per_step else None
        if context.dataset_type == "Dataset":
            if mining:
                hard.update(self._hard_centres(context, lambda i: deterministic(dict(datalist[i])), len(datalist)))
            return Dataset(datalist, Compose([deterministic, *([per_step] if per_step else [])])), datalist
        signature = self.cache_signature(context)
        if is_train and distributed.rank() == 0:
            removed = prune(self.cache_dir(), context.datalist, signature)
            if removed:
                logger.info("cache: removed %d entries no study uses any more", removed)
        n_train, n_val = len(context.train_datalist), len(context.val_datalist)
        share = (n_train if is_train else n_val) / max(1, n_train + n_val)
        cache = StudyCache(datalist, deterministic, per_step, signature, self.cache_dir(),
                           memory_mb=context.request["cache_mb"] * share,
                           # the crops and validation's region are views of the cached study, and no step transform
                           # changes its input in place (tests/test_trainer.py checks): no copy of the whole study at
                           # each step
                           workers=context.request["cache_workers"], copy_study=False)
        logger.info("%d - %s: %d studies", context.local_rank, "training" if is_train else "validation", len(datalist))
        cache.warm()
        if mining:
            hard.update(self._hard_centres(context, cache.prepared, len(datalist)))
        return cache, datalist

    def train_data_loader(self, context: Context, num_workers: int = 0, shuffle: bool = True):
        """MONAI Label's loader, with loader_workers processes running the random transforms (its own default runs
        them in the training process: on the H200 that bounded the steps at 0.7 s against the network's few ms).
        MONAI's loader seeds each process's transforms apart (monai.data.utils.worker_init_fn)."""
        return super().train_data_loader(context, context.request["loader_workers"] or num_workers, shuffle)

    def _dataloader(self, context: Context, dataset, batch_size: int, num_workers: int, shuffle: bool = False):
        """MONAI Label's, but loader processes are forked once per run (the study cache is theirs without pickling
        it, and without starting them again for each of a GPU run's short epochs), and on a GPU their crops come
        in pinned memory."""
        if not num_workers:
            return super()._dataloader(context, dataset, batch_size, num_workers, shuffle)
        if "fork" not in multiprocessing.get_all_start_methods():
            raise InvalidInput("loader_workers needs processes started by fork (Linux): set it to 0 here")
        loader = ThreadDataLoader if context.dataloader_type == "ThreadDataLoader" else DataLoader
        return loader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      persistent_workers=True, multiprocessing_context="fork",
                      pin_memory=torch.device(context.device).type == "cuda")

    def _hard_centres(self, context: Context, prepared: Callable[[int], dict], count: int) -> dict:
        """Where the model this run fine-tunes errs on tumours, per training study (crop_ratios' fourth number)."""
        path = self.load_path("", bool(context.request["pretrained"]))
        if not path:
            raise InvalidInput("crop_ratios with a fourth number centres crops where the model being fine-tuned "
                               "errs: there is no model to fine-tune (train from one, or give three numbers)")
        s = self.settings
        network = load_network(Path(path), s.dropout, context.device)
        options = {"roi": s.roi_size, "overlap": s.sw_overlap, "dtype": self._autocast(context)[1],
                   "smooth_above_hu": s.denoise_above_hu, "smooth_sigma_mm": s.denoise_sigma_mm}
        rng = np.random.default_rng(max(0, context.request["seed"]))
        logger.info("hard crops: finding where %s errs on tumours in %d training studies", path, count)
        table = centre_table(prepared, count, lambda item: hard_centres(
            network, item["image"], item["label"], s.spacing, s.min_tumour_ml, MAX_CROP_CENTRES, rng, **options))
        return table

    def train_post_transforms(self, context: Context):
        return [
            Activationsd(keys="pred", softmax=True),
            AsDiscreted(keys=("pred", "label"), argmax=(True, False), to_onehot=NUM_CLASSES),
        ]

    # ---- inference during training
    def _autocast(self, context: Context, training: bool = False) -> tuple[str, torch.dtype | None]:
        """CUDA fp16 AMP is the engine's own (with its gradient scaler); CUDA bf16 needs no scaler and runs here,
        as does bf16 on CPUs that have it (for training steps, where its gradients are right: training_dtype)."""
        device = context.device
        if device.type == "cuda":
            bf16 = self._amp_wanted(context) and context.request["amp_dtype"] == "bfloat16"
            return "cuda", torch.bfloat16 if bf16 else None
        if training:
            return device.type, training_dtype(device, False, context.request["cpu_bf16"],
                                               context.request["crop_size"], STRIDES)
        return device.type, autocast_dtype(device, False, context.request["cpu_bf16"])

    def _amp_wanted(self, context: Context) -> bool:
        return context.request["amp"]

    def _create_trainer(self, context: Context):
        # the engine's fp16 AMP only when fp16 is what was asked for (bf16 runs in the inferer)
        self._amp = context.device.type == "cuda" and self._amp_wanted(context) \
            and context.request["amp_dtype"] == "float16"
        return super()._create_trainer(context)

    def train_inferer(self, context: Context):
        return AutocastInferer(SimpleInferer(), *self._autocast(context, training=True))

    def val_inferer(self, context: Context):
        inner = FittedWindows(self.settings.roi_size, self.settings.sw_overlap)
        return Validated(AutocastInferer(inner, *self._autocast(context)), getattr(context, "average", None))

    def val_additional_metrics(self, context: Context):
        s = self.settings
        return {**{f"val_{name}_dice": MeanDice(output_transform=SelectClass(c), include_background=True)
                   for name, c in LABELS.items()},
                "val_tumour_global_dice": GlobalTumourDice(), **lesion_metrics(tuple(s.spacing), CleanUp.of(s))}

    # ---- publishing, progress, resuming
    @property
    def curves_path(self) -> Path:
        """The PNG of loss and Dice per class that each validation redraws."""
        return Path(self._stats_path).with_name("train_curves.png")

    def finalize(self, context: Context):
        average: WeightAverage | None = getattr(context, "average", None)
        if average is not None:
            average.attach(context.trainer)  # first: it starts from the weights loaded before it
        resumed = None
        if context.request["resume"]:
            state = resume.read(Path(context.output_dir) / resume.FILENAME)
            if state["epoch"] >= context.max_epochs:
                raise InvalidInput(f"the run to resume has done {state['epoch']} epochs: ask for more than that "
                                   f"(max_epochs {context.max_epochs})")
            resume.restore(state, context.trainer, context.network, context.optimizer, average)
            resumed = state["record"]
        started_from = self.load_path("", bool(context.request["pretrained"])) if not resumed else "a resumed run"
        card = {**self._card, "trained_on": "this datastore's final labels"
                + (" and a Decathlon folder" if context.request.get("decathlon_dir") else ""),
                "run_id": context.run_id, "started_from": started_from}
        validated = average.module if average is not None else context.network  # what is validated is published
        publisher = PublishBest(self._stats_path, self._publish_path, context.trainer, context.evaluator,
                                validated, context.start_ts, context.request["publish_metric"], card,
                                measure_baseline=bool(started_from) and not resumed,
                                writer=distributed.rank() == 0, resumed=resumed, curves_path=self.curves_path)
        publisher.attach()
        resume.ResumePoint(Path(context.output_dir) / resume.FILENAME, context.trainer, context.network,
                           context.optimizer, publisher.state, context.run_id, average).attach()
        rank_report.attach(context.trainer, Path(context.output_dir) / "ranks", context.network, context.device,
                           distributed.shard(context.train_datalist, train=True),
                           distributed.shard(context.val_datalist, train=False), lambda: publisher.writes)
        patience = context.request["early_stop_patience"]
        if patience > 0 and context.evaluator is not None:
            context.evaluator.add_event_handler(Events.EPOCH_COMPLETED, EarlyStopping(
                patience=patience, score_function=stopping_fn_from_metric(context.request["publish_metric"]),
                trainer=context.trainer))
