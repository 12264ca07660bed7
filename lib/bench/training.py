"""`liver-tumor bench train`: MONAI Label's BasicTrainTask as its sample apps configure it, and this app's trainer,
side by side on the same phantoms, the same network and the same wall-clock budget.

The baseline is the radiology sample app's segmentation trainer (AdamW with amsgrad at its default rate, squared
Dice loss, its transforms' order: pre-processing, `EnsureTyped` to the device, then the random ones) with
everything else left at BasicTrainTask's defaults: SmartCacheDataset, ThreadDataLoader, `amp` (fp16 on CUDA, no
effect on a CPU), StepLR, the training Dice computed at every step, validation on 160^3 windows. MLflow tracking
is off for both (MLflow no longer accepts the file store MONAI Label gives it). It gets this app's network,
working spacing, HU window and crops, so that the two differ only in how they train.

Each trainer runs in a fresh process (its peak resident memory is its own) until the budget is spent, validating
after every epoch. Reported: training samples (crops) per second over the training steps, the wall-clock time from
the start (caching included) to liver Dice >= target on the validation phantoms, peak memory, and the last and
best Dice per class.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from monai.engines.workflow import Engine, Events  # noqa: E402
from monai.handlers import MeanDice  # noqa: E402
from monai.inferers import SlidingWindowInferer  # noqa: E402
from monai.losses import DiceLoss  # noqa: E402
from monai.transforms import (  # noqa: E402
    Activationsd,
    AsDiscreted,
    EnsureTyped,
    LoadImaged,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandShiftIntensityd,
)
from monai.utils import set_determinism  # noqa: E402
from monailabel.tasks.train.basic_train import BasicTrainTask, Context  # noqa: E402

from ..data.atomic import copy_file, write_atomic  # noqa: E402
from ..data.phantoms.batch import make_phantoms  # noqa: E402
from ..data.phantoms.study import study_id, study_paths  # noqa: E402
from ..data.sample_datastore import final_label_path  # noqa: E402
from ..datastore import CheckedLocalDatastore  # noqa: E402
from ..model.network import LABELS, NUM_CLASSES, build_unet  # noqa: E402
from ..settings import Settings  # noqa: E402
from ..trainers.liver_tumor import LiverTumorTrain  # noqa: E402
from ..trainers.steps import EpochSteps  # noqa: E402
from ..trainers.validation import SelectClass  # noqa: E402
from ..transforms.preprocess import preprocessing  # noqa: E402
from .inference import device_name, peak_resident_mb  # noqa: E402

TRAINERS = ("baseline", "app")


@dataclass(frozen=True)
class TrainBenchConfig:
    train: int = 16  # phantoms that train
    val: int = 4  # phantoms that validate
    preset: str = "small"
    seed: int = 3000
    spacing: float = 2.0
    crop: int = 64
    crops_per_volume: int = 4
    minutes: float = 10.0  # wall-clock budget per trainer
    target: float = 0.90  # liver Dice
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    trainers: tuple[str, ...] = TRAINERS
    app_conf: tuple[tuple[str, str], ...] = ()  # --conf options for the app's trainer only (a variant to compare)


def make_data(work: Path, cfg: TrainBenchConfig) -> tuple[Path, list[dict]]:
    """A datastore of `train` phantoms with final labels, and `val` other phantoms with their truth."""
    store, val_dir = work / "datastore", work / "validation"
    make_phantoms(store, cfg.train, cfg.seed, cfg.preset, jobs=2)
    for i in range(cfg.train):
        sid = study_id(cfg.seed, i)
        if not final_label_path(store, sid).exists():
            copy_file(study_paths(store, sid)["label"], final_label_path(store, sid))
    make_phantoms(val_dir, cfg.val, cfg.seed + 1, cfg.preset, jobs=2)
    val = [{"image": str(study_paths(val_dir, study_id(cfg.seed + 1, i))["image"]),
            "label": str(study_paths(val_dir, study_id(cfg.seed + 1, i))["label"])} for i in range(cfg.val)]
    return store, val


class Recorder:
    """Per epoch: crops trained on and the time the steps took (data loading included, validation not); per
    validation: the time since the start and Dice per class. Ends training once the budget is spent."""

    def __init__(self, start: float, budget_s: float) -> None:
        self.start, self.budget_s = start, budget_s
        self.epochs: list[dict] = []

    def attach(self, trainer: Engine, evaluator: Engine) -> None:
        self.trainer = trainer
        self.steps = EpochSteps().attach(trainer)
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, self._validated)

    def _validated(self, engine: Engine) -> None:
        if self.trainer.state.epoch == 0:  # a fine-tuning baseline, not a training epoch
            return
        m = engine.state.metrics
        now = time.perf_counter()
        self.epochs.append({"epoch": self.trainer.state.epoch, "samples": self.steps.samples,
                            "train_s": round(self.steps.seconds, 3),
                            "elapsed_s": round(now - self.start, 1),
                            **{f"{n}_dice": _number(m.get(f"val_{n}_dice")) for n in LABELS}})
        if now - self.start > self.budget_s:
            self.trainer.terminate()


def _number(v: Any) -> float | None:
    if isinstance(v, torch.Tensor):
        v = v.item()
    return round(float(v), 4) if isinstance(v, (int, float)) else None


class SampleAppTrain(BasicTrainTask):
    """MONAI Label's radiology sample app's segmentation trainer on this app's network, spacing, window and crops."""

    def __init__(self, model_dir: str, settings: Settings) -> None:
        self.settings = settings
        super().__init__(model_dir, "baseline", labels=LABELS)

    def network(self, context: Context):
        return build_unet(self.settings.dropout)

    def optimizer(self, context: Context):
        return torch.optim.AdamW(context.network.parameters(), amsgrad=True)

    def loss_function(self, context: Context):
        return DiceLoss(to_onehot_y=True, softmax=True, squared_pred=True)

    def train_pre_transforms(self, context: Context):
        keys = ("image", "label")
        return [
            LoadImaged(keys=keys),
            *preprocessing(self.settings.spacing, keys=keys, label_key="label"),
            EnsureTyped(keys=keys, device=context.device),
            RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=(self.settings.crop_size,) * 3, pos=1,
                                   neg=1, num_samples=self.settings.crops_per_volume, image_key="image",
                                   image_threshold=0, allow_smaller=True),
            RandFlipd(keys=keys, spatial_axis=[0], prob=0.10),
            RandFlipd(keys=keys, spatial_axis=[1], prob=0.10),
            RandFlipd(keys=keys, spatial_axis=[2], prob=0.10),
            RandRotate90d(keys=keys, prob=0.10, max_k=3),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        ]

    def train_post_transforms(self, context: Context):
        return [
            EnsureTyped(keys="pred", device=context.device),
            Activationsd(keys="pred", softmax=True),
            AsDiscreted(keys=("pred", "label"), argmax=(True, False), to_onehot=(NUM_CLASSES, NUM_CLASSES)),
        ]

    def val_pre_transforms(self, context: Context):
        keys = ("image", "label")
        return [LoadImaged(keys=keys), *preprocessing(self.settings.spacing, keys=keys, label_key="label"),
                EnsureTyped(keys=keys, device=context.device)]

    def val_inferer(self, context: Context):
        return SlidingWindowInferer(roi_size=(160, 160, 160))

    def val_additional_metrics(self, context: Context):  # measurement only: Dice per class, as the app reports it
        return {f"val_{name}_dice": MeanDice(output_transform=SelectClass(c), include_background=True)
                for name, c in LABELS.items()}


def _measured(base: type) -> type:
    class Measured(base):  # type: ignore[misc, valid-type]
        recorder: Recorder

        def finalize(self, context: Context):
            super().finalize(context)
            self.recorder.attach(context.trainer, context.evaluator)

    return Measured


def _child(role: str, cfg: dict, store: str, val: list[dict], model_dir: str, queue: mp.Queue) -> None:
    sys.stdout = sys.stderr  # MONAI's progress lines: the parent's stdout is for the JSON result
    logging.basicConfig(level=logging.WARNING)
    cfg_ = TrainBenchConfig(**{**cfg, "trainers": tuple(cfg["trainers"]),
                               "app_conf": tuple(tuple(kv) for kv in cfg["app_conf"])})
    shared = {"spacing": str(cfg_.spacing), "crop_size": str(cfg_.crop), "crops_per_volume": str(cfg_.crops_per_volume),
              "pretrained_path": "none"}
    settings = Settings.from_conf({**shared, **(dict(cfg_.app_conf) if role == "app" else {})})
    set_determinism(seed=0)
    # MLflow tracking off for both: MLflow no longer takes the file store that MONAI Label points it at
    request = {"max_epochs": 100_000, "pretrained": False, "val_ds": val, "device": cfg_.device,
               "multi_gpu": False, "val_interval": 1, "tracking": "None"}
    if role == "baseline":
        task = _measured(SampleAppTrain)(model_dir, settings)
    else:
        task = _measured(LiverTumorTrain)(model_dir, settings, str(Path(model_dir) / "published.pt"), lambda: None,
                                          {"model": "liver_tumor"}, "bench")
    start = time.perf_counter()
    task.recorder = Recorder(start, cfg_.minutes * 60)
    task(request, CheckedLocalDatastore(store))
    queue.put({"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak_resident_mb()),
               "epochs": task.recorder.epochs})


def run_trainer(role: str, cfg: TrainBenchConfig, store: Path, val: list[dict], model_dir: Path) -> dict:
    shutil.rmtree(model_dir, ignore_errors=True)  # an earlier run's disk cache would make this one look faster
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(role, asdict(cfg), str(store), val, str(model_dir), queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"the {role} trainer failed (exit code {proc.exitcode})")
    return summarise(queue.get(), cfg.target)


def summarise(raw: dict, target: float) -> dict:
    epochs = raw["epochs"]
    samples, train_s = sum(e["samples"] for e in epochs), sum(e["train_s"] for e in epochs)
    reached = next((e for e in epochs if (e["liver_dice"] or 0) >= target), None)
    # validation Dice can cross the target on one lucky epoch: also the first epoch whose mean with the two before
    # it is at the target
    held = next((e for i, e in enumerate(epochs) if i >= 2
                 and sum(x["liver_dice"] or 0 for x in epochs[i - 2:i + 1]) / 3 >= target), None)
    best = max(epochs, key=lambda e: e["liver_dice"] or 0) if epochs else {}
    return {**raw, "samples": samples, "samples_per_s": round(samples / train_s, 3) if train_s else None,
            "time_to_target_s": reached["elapsed_s"] if reached else None,
            "epoch_at_target": reached["epoch"] if reached else None,
            "time_to_target_held_s": held["elapsed_s"] if held else None,
            "final": {k: epochs[-1][k] for k in ("epoch", "liver_dice", "tumour_dice")} if epochs else {},
            "best": {k: best.get(k) for k in ("epoch", "liver_dice", "tumour_dice")}}


def run(work: Path, cfg: TrainBenchConfig, progress: Callable[[str], None] = print) -> dict:
    started = time.time()
    progress(f"phantoms: {cfg.train} training, {cfg.val} validation ({cfg.preset})")
    store, val = make_data(work, cfg)
    result: dict[str, Any] = {"config": asdict(cfg), "machine": device_name(cfg.device),
                              "threads": torch.get_num_threads(), "trainers": {}}
    for role in cfg.trainers:
        progress(f"{role}: training for {cfg.minutes:g} min")
        out = run_trainer(role, cfg, store, val, work / "runs" / role)
        result["trainers"][role] = out
        progress(f"{role}: {out['samples_per_s']} samples/s, liver Dice {cfg.target} after "
                 f"{out['time_to_target_s']} s, final {out['final']}, peak {out['peak_rss_mb']} MB")
    t = result["trainers"]
    if set(TRAINERS) <= set(t):
        b, a = t["baseline"], t["app"]
        result["ratios"] = {
            "throughput": round(a["samples_per_s"] / b["samples_per_s"], 2)
            if a["samples_per_s"] and b["samples_per_s"] else None,
            "time_to_target": round(b["time_to_target_s"] / a["time_to_target_s"], 2)
            if a["time_to_target_s"] and b["time_to_target_s"] else None,
            "time_to_target_held": round(b["time_to_target_held_s"] / a["time_to_target_held_s"], 2)
            if a["time_to_target_held_s"] and b["time_to_target_held_s"] else None,
        }
    result["seconds"] = round(time.time() - started, 1)
    return result


def table(result: dict) -> str:
    target = result["config"]["target"]
    rows = ["| trainer | samples/s | time to liver Dice {0:.2f} | same, 3-epoch mean | epochs | peak RSS | "
            "final liver / tumour Dice | best liver Dice |".format(target), "|" + " --- |" * 8]
    for role, r in result["trainers"].items():
        ttt = f"{r['time_to_target_s']:.0f} s (epoch {r['epoch_at_target']})" if r["time_to_target_s"] else \
            "not reached"
        held = f"{r['time_to_target_held_s']:.0f} s" if r["time_to_target_held_s"] else "not reached"
        rows.append(f"| {role} | {r['samples_per_s']} | {ttt} | {held} | {r['final'].get('epoch')} | "
                    f"{r['peak_rss_mb'] / 1024:.1f} GiB | {r['final'].get('liver_dice')} / "
                    f"{r['final'].get('tumour_dice')} | {r['best'].get('liver_dice')} |")
    return "\n".join(rows)


def plot(result: dict, out: Path) -> Path:
    """Liver and tumour Dice against wall-clock time for both trainers, and their throughput."""
    colours = {"baseline": "#777777", "app": "#1565c0"}
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    for role, r in result["trainers"].items():
        e = r["epochs"]
        minutes = [x["elapsed_s"] / 60 for x in e]
        ax.plot(minutes, [x["liver_dice"] for x in e], "-", color=colours.get(role), label=f"{role}: liver")
        ax.plot(minutes, [x["tumour_dice"] for x in e], ":", color=colours.get(role), label=f"{role}: tumour")
    ax.axhline(result["config"]["target"], color="#2e7d32", lw=0.8, ls="--")
    ax.set(xlabel="wall-clock minutes (caching included)", ylabel="validation Dice", ylim=(0, 1),
           title=f"{result['config']['train']} training phantoms, {result['machine']}")
    ax.legend(fontsize=8, loc="lower right")
    roles = list(result["trainers"])
    bars.bar(roles, [result["trainers"][r]["samples_per_s"] or 0 for r in roles],
             color=[colours.get(r) for r in roles])
    bars.set(ylabel="training crops per second", title="throughput")
    fig.tight_layout()
    write_atomic(out, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return out


def with_changes(cfg: TrainBenchConfig, **changes: Any) -> TrainBenchConfig:
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})
