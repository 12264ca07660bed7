"""Every option the app reads, typed, with its default and meaning, and the one reading of each.

An option comes as `--conf KEY VALUE` (a string, when MONAI Label starts the app) or in a request's JSON (a
string, number, list or boolean). Both go through `read`: the same parsing, the same checks and the same words
when a value is refused, `--conf roi_size 100` at start as `{"roi_size": 100}` in an /infer request (there a 422).
`Settings` holds the --conf options, parsed once into one frozen object; `REQUEST_ONLY` the options only a request
sets. `docs/options.md` is generated from this file (`documentation`), and a test holds the two together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .errors import InvalidInput

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "liver_tumor"
DEMO_CHECKPOINT = APP_DIR / "pretrained" / "liver_tumor_phantoms.pt"
LOCATOR_CHECKPOINT = APP_DIR / "pretrained" / "liver_locator.pt"
PYLIVERLESIONSEG_WEIGHTS = APP_DIR / "pretrained" / "pyliverlesionseg.pt"  # converted on first use, not committed
SECOND_READER = APP_DIR / "pretrained" / "second_reader"  # the lesion network and the reader (docs/model-log.md, R1)
# the learning rate over a training run (lib.trainers.lr_schedule); the first is the default
LR_SCHEDULES = ("constant", "cosine")
# what a training run may publish by (lib.trainers.publish); the first is the default
PUBLISH_METRICS = ("val_mean_dice", "val_lesion_sensitivity", "val_lesions_matched", "val_tumour_global_dice")
# the seed's intensity window, scaled to 0..1: the network's input (lib.transforms.preprocess)
HU_WINDOW = (-21.0, 189.0)
NO_FLOOR_HU = -1000.0  # fatty_liver_floor_hu: air, no floor

Check = Callable[[Any], "str | None"]  # what a parsed value must be, when it is not; None when it is fine


class OptionError(ValueError):
    """A value an option cannot take; the message names the option and says what it can take."""


# ---- checks
def at_least(minimum: float) -> Check:
    return lambda v: None if _each(v, lambda x: x >= minimum) else f"must be at least {minimum}"


def between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def positive(v: Any) -> str | None:
    return None if _each(v, lambda x: x > 0) else "must be positive"


def not_negative(v: Any) -> str | None:
    return None if _each(v, lambda x: x >= 0) else "must be 0 or more"


def fraction(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def unit_interval(v: float) -> str | None:
    return None if 0 <= v <= 1 else "must be in [0, 1]"


def no_floor_or_in_window(v: float) -> str | None:
    """A fatty liver's floor: none, or a CT number the network's window shows (under it a liver reads as its edge)."""
    low, high = HU_WINDOW
    return None if v == NO_FLOOR_HU or low <= v <= high else \
        f"must be {NO_FLOOR_HU:g} (no floor) or within the HU window {low:g} to {high:g}"


def ordered_at_least(minimum: float) -> Check:
    return lambda v: None if v[0] >= minimum and v[0] <= v[1] else f"must be two values, at least {minimum}, in order"


def positive_fraction(v: float) -> str | None:
    return None if 0 < v <= 1 else "must be in (0, 1]"


def open_fraction(v: float) -> str | None:
    return None if 0 < v < 1 else "must be in (0, 1)"


def multiples_of_16(v: int | tuple[int, ...]) -> str | None:
    """What the UNet takes: its four strides of 2 (lib.model.network.STRIDES) halve each edge four times."""
    return None if _each(v, lambda x: x >= 16 and x % 16 == 0) else "must be multiples of 16"


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be {' or '.join(choices)}"


def lesion_windows(v: tuple[int, ...]) -> str | None:
    """The outputs pyliverlesionseg's lesion network can give (valid convolutions, 3 poolings by 2, (3, 3, 1) and
    (3, 3, 3) kernels): 4 + 8k voxels across, 2 + 8k along z."""
    ok = v[0] % 8 == 4 and v[1] % 8 == 4 and v[2] % 8 == 2
    return None if ok else "must be 4, 12, 20, ... (4 + 8k) for the first two and 2, 10, 18, ... (2 + 8k) for z"


def ratios(v: str) -> str | None:
    try:
        crop_ratios(v)
    except ValueError:
        return "must be empty or three or four non-negative numbers with a positive sum"
    return None


def _each(v: Any, ok: Callable[[Any], bool]) -> bool:
    return all(ok(x) for x in v) if isinstance(v, tuple) else ok(v)


def _option(help: str, check: Check | None = None, request: Iterable[str] = ()) -> dict:
    """A dataclass field's metadata: its meaning, its check, and the requests that may set it."""
    return {"help": help, "check": check, "request": tuple(request)}


def _optional_path(value: str) -> Path | None:
    """A path option: None for '' or 'none'."""
    return None if value.lower() in ("", "none") else Path(value)


@dataclass(frozen=True)
class Settings:
    # --- model
    pretrained_path: str = field(default=str(DEMO_CHECKPOINT), metadata=_option(
        "checkpoint to start from: a state dict, one nested under 'model', or TorchScript (Clara, MONAI bundle); "
        "'none' for no pretrained model. Default: the demo checkpoint, trained on synthetic phantoms only"))
    spacing: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0), metadata=_option(
        "working voxel spacing in mm; when not given, the one on the model's card (1.0 for the demo)", positive))
    dropout: float = field(default=0.2, metadata=_option(
        "dropout of the UNet (used for MC-dropout uncertainty)", fraction))
    # --- input
    max_image_mb: float = field(default=4096.0, metadata=_option(
        "largest image accepted, in MB of voxels (uncompressed); a NIfTI file's header is checked before anything "
        "is read", positive))
    # --- inference
    roi_size: tuple[int, int, int] = field(default=(160, 160, 160), metadata=_option(
        "largest sliding-window size in voxels; windows shrink to the smallest that cover the region with as many "
        "windows per axis (fit_windows false keeps them at this size)", multiples_of_16, ["infer"]))
    sw_overlap: float = field(default=0.25, metadata=_option("sliding-window overlap", fraction, ["infer"]))
    sw_batch_size: int = field(default=1, metadata=_option("windows per forward pass", at_least(1), ["infer"]))
    infer_concurrency: int = field(default=1, metadata=_option(
        "inferences run at a time on each device; more wait their turn (each already uses every CPU core)",
        at_least(1)))
    amp: bool = field(default=True, metadata=_option("mixed precision on CUDA (inference and training)",
                                                      request=["train"]))
    cpu_bf16: bool = field(default=True, metadata=_option(
        "bfloat16 autocast on CPUs with AVX-512 BF16 or AMX (ignored on others; training steps fall back to float32 "
        "for crops of 32 voxels or fewer where the CPU's bf16 gradient is wrong: docs/training.md)",
        request=["infer", "train"]))
    channels_last: bool = field(default=True, metadata=_option(
        "channels-last 3D memory layout for the networks at inference, the model's and the second reader's (training "
        "does not use it: its backward pass gave NaN gradients here)"))
    liver_model_path: str = field(default="none", metadata=_option(
        "a second checkpoint of the same network whose liver (liver and tumour together) replaces the model's, the "
        "model keeping its tumours (lib/model/liver_from.py); inference runs both; 'none': the model alone"))
    locator_path: str = field(default=str(LOCATOR_CHECKPOINT), metadata=_option(
        "the small 4 mm UNet that finds the liver first, so that full resolution runs only around it; 'none': the "
        "whole volume at full resolution (per request: cascade)"))
    locator_margin_mm: float = field(default=25.0, metadata=_option(
        "the liver's box from the locator is widened by this much on every side", not_negative))
    # off by default: 16 mm, chosen on the 20 tuning phantoms of seed 2500, took the stomach the model calls liver
    # in studies without contrast off the label (whole-liver Dice 0.934 -> 0.949 there, held-out 0.927 -> 0.934), but
    # the locator finds a third of the liver of the real TotalSegmentator CT: its liver Dice fell from 0.899 to 0.737
    # (docs/model-log.md)
    liver_gate_mm: float = field(default=0.0, metadata=_option(
        "labelled voxels farther than this from the liver the locator found (at 4 mm) are removed: a neighbouring "
        "organ the model calls liver; 0: none. Only where the locator found a liver", not_negative, ["infer"]))
    tumour_margin_mm: float = field(default=5.0, metadata=_option(
        "tumour is kept only within this distance of the liver", not_negative))
    # 0.25 mL (a 7.8 mm sphere), chosen on 10 tuning phantoms of seed 2500 (neither trained nor tested on): against
    # 0.02, false-positive lesions 6.4 -> 3.2 a study, visible lesions of 10 mm or more found 9/16 either way, one
    # lesion of 10-20 mm of 19 lost (docs/model.md)
    min_tumour_ml: float = field(default=0.25, metadata=_option(
        "tumour components smaller than this are removed", not_negative))
    # 0.6, chosen on the 20 tuning phantoms of seed 2500 from the shipped model's tumour components (every one
    # touching a true lesion had 0.69 or more; 24 of the 73 false ones had less): false positives 3.65 -> 2.45 a
    # study there, held-out 2.42 -> 2.00 with the same lesions found and Dice, LiTS 117 unchanged (docs/model-log.md)
    min_liver_around_tumour: float = field(default=0.6, metadata=_option(
        "tumour components are removed where less than this share of the voxels within 3 mm of them is liver or "
        "tumour (the gallbladder, the stomach or a vein beside the liver called tumour); 0: none",
        unit_interval, ["infer"]))
    # 10 HU, chosen on 20 tuning phantoms of seed 2500 (neither trained nor tested on): the five studies above it
    # (10.8-15.8 HU) went from liver Dice 0.31-0.81 to 0.87-0.94; smoothing the ones under it (2.5-8.4 HU) cost
    # lesions (docs/model.md)
    denoise_above_hu: float = field(default=10.0, metadata=_option(
        "studies whose noise at the working spacing is above this many HU SD are smoothed (a Gaussian of "
        "denoise_sigma_mm) before the network; 0: never. The measured noise is in every result's JSON",
        not_negative, ["infer"]))
    denoise_sigma_mm: float = field(default=1.0, metadata=_option(
        "width (SD, mm) of that smoothing", positive, ["infer"]))
    # off by default: 0.6, chosen on the same 20 tuning phantoms (false positives 3.65 -> 2.15 a study, 30 of 31
    # lesions still found), cost lesions on the held-out test phantoms (false positives 2.42 -> 1.25, lesions found
    # 18 -> 15 of 113) and on LiTS 117 (24 -> 22 of 70), and lesions found come first (docs/model-log.md)
    min_tumour_probability: float = field(default=0.0, metadata=_option(
        "tumour components whose mean tumour probability is under this become liver or background; 0: none",
        unit_interval, ["infer"]))
    # off by default: 0.05, chosen on those 20 tuning phantoms (false positives 3.65 -> 1.3 a study, 29 of 31 lesions
    # still found), took the held-out test phantoms' false positives from 2.42 to 0.42 a study (lesions found 18 -> 16
    # of 113, both lost ones touched at IoU 0.004 or less) but lost 3 of LiTS 117's 24 (one of 24 mm found at IoU
    # 0.28), set beforehand as the limit (docs/model-log.md)
    max_tumour_background: float = field(default=1.0, metadata=_option(
        "tumour components whose mean background probability is over this (the network doubting they are in the "
        "liver: the gallbladder, the hilum) become liver or background; 1: none", unit_interval, ["infer"]))
    # off by default: with max_tumour_background 0.05, +0.5 and +1.0 found 31 and 33 of the 20 tuning phantoms' 94
    # lesions (the shipped model 31) with 1.25 and 1.6 false positives a study, but 11 of 18 visible ones, not the
    # 12 asked beforehand (docs/model-log.md)
    tumour_logit_bias: float = field(default=0.0, metadata=_option(
        "added to the network's tumour logit before the argmax and the component filters: above 0 more voxels are "
        "called tumour, below 0 fewer; 0: none", between(-10, 10), ["infer"]))
    # off by default: -20 (from 90 HU, set before measuring from the generator's liver ranges, and checked on the
    # 20 tuning phantoms of seed 2500, as generated and with the liver 20 HU brighter: whole liver 0.883 -> 0.927
    # there) passed the test sets once (held-out phantoms of seed 2100: the same lesions found, whole liver 0.941 ->
    # 0.944; LiTS 117 whole liver 0.837 -> 0.899, tumour Dice 0.319 -> 0.418, lesions found 24 -> 27 of 70) but
    # takes `bench infer` on the 512 x 512 x 200 case to the edge of 10x (7.9x to 11.4x over five runs)
    # (docs/model-log.md)
    intensity_tta_hu: float = field(default=0.0, metadata=_option(
        "where the first pass's liver is enhanced (intensity_tta_liver_hu), the network runs a second time on the "
        "study shifted by this many HU (below 0: darker; -20 finds real livers brighter than the phantoms'); the "
        "two passes' logits are averaged, but where the first called tumour; 0: one pass", between(-100, 100),
        ["infer"]))
    intensity_tta_liver_hu: float = field(default=90.0, metadata=_option(
        "the median CT number (HU) the first pass's liver must reach for that second pass (90: between the phantoms' "
        "arterial and portal-venous livers; a darker, fatty or non-contrast, liver gets none)", request=["infer"]))
    # on by default with dark_liver_max_ml 800: a rescue where the first pass lost a dark liver. +20 HU always (no
    # volume limit) found tuning study 057's liver (0.002 -> 0.849) but cost livers the first pass had found up to
    # 0.026 on a fresh dark set (seed 2700), +10 up to 0.012 on the tuning darks; limited to a first-pass organ under
    # 800 mL it ran on 057 alone of the 15 tuning darks and on none of a fresh set of 17 dark livers (seed 2800), of
    # held-out seed 2000, 2200 or the real CT, so changed nothing there (docs/model-log.md, the dark-liver pass)
    dark_liver_tta_hu: float = field(default=20.0, metadata=_option(
        "where the first pass's liver is dark (under dark_liver_hu: fatty, no contrast), the network runs a second "
        "time on the study shifted by this many HU (above 0: brighter; 20 found a phantom's liver the first pass had "
        "lost, under the network's floor); averaged as intensity_tta_hu's; 0: none", between(-100, 100), ["infer"]))
    dark_liver_hu: float = field(default=35.0, metadata=_option(
        "the median CT number (HU) under which the first pass's liver is dark (35: between the phantoms' normal "
        "livers, 46 HU and up, and their fatty livers without contrast, 14 to 34 HU)", request=["infer"]))
    dark_liver_max_ml: float = field(default=800.0, metadata=_option(
        "the dark liver's second pass only where the organ the clean-up keeps of the first pass (liver and tumour) is "
        "under this many mL: a dark liver it mostly lost (800: half a small adult liver); 0: whatever its volume",
        at_least(0), ["infer"]))
    # off by default: it adds a second network at 1 mm over the liver (bench infer's 512 x 512 x 200 case: 12.25 s
    # with it against 3.49 s, 3.8x the baseline where the bar is 10x). Its point 0.3 was chosen on the 20 tuning
    # phantoms; on the test sets, once, it found more lesions with fewer false positives (held-out 18 -> 24 of 113,
    # 2.42 -> 0.17 a study; LiTS 117 24 -> 33 of 70, none false) (docs/model-log.md, run R1b)
    second_reader: bool = field(default=False, metadata=_option(
        "a second reader of the tumours: a lesion network at 1 mm beside the model, then of both networks' tumour "
        "components only those the reader scores at second_reader_threshold or more (scores in the result JSON)",
        request=["infer"]))
    second_reader_threshold: float = field(default=0.3, metadata=_option(
        "the reader's score a tumour component needs to be kept", unit_interval, ["infer"]))
    second_reader_path: str = field(default=str(SECOND_READER), metadata=_option(
        "folder with the second reader's lesion network (lesion_net.pt) and reader (reader.json)"))
    pyliverlesionseg_path: str = field(default=str(PYLIVERLESIONSEG_WEIGHTS), metadata=_option(
        "pyliverlesionseg's liver and lesion networks (trained on patients' CT), converted from its PyPI wheel by "
        "`liver-tumor pyliverlesionseg-model`, which make serve runs when the file is missing; 'none': no "
        "pyliverlesionseg model"))
    lesion_window: tuple[int, int, int] = field(default=(100, 100, 42), metadata=_option(
        "voxels of each output window of pyliverlesionseg's lesion network (1 x 1 x 3 mm; the package's own: "
        "92,84,42)", lesion_windows, ["infer"]))
    lesion_spread: bool = field(default=True, metadata=_option(
        "pyliverlesionseg's lesion windows spread evenly over the liver, as few as cover it; false: placed as the "
        "package places them (flush with the start, the last flush with the end)", request=["infer"]))
    preannotation_min_labels: int = field(default=3, metadata=_option(
        "with fewer final labels than this, the model trained on patients (pyliverlesionseg) pre-annotates; from "
        "then on the one that scores better on the last training run's validation labels", not_negative))
    # --- training (defaults of a train request; each can be overridden per request)
    max_epochs: int = field(default=50, metadata=_option("epochs per training run", at_least(1), ["train"]))
    crop_size: int = field(default=96, metadata=_option(
        "edge of the random training crops (voxels, a multiple of 16); a study smaller than a crop is padded to it",
        multiples_of_16, ["train"]))
    crops_per_volume: int = field(default=4, metadata=_option(
        "random crops drawn from each volume per step", at_least(1), ["train"]))
    train_batch_size: int = field(default=1, metadata=_option(
        "studies per training step, each giving crops_per_volume crops: with more than one, batch norm's statistics "
        "in a step are not one study's",
        at_least(1), ["train"]))
    crop_ratios: str = field(default="", metadata=_option(
        "empty: crops centred on foreground or background 1:1 (the seed's); or background,liver,tumour ratios such "
        "as 1,1,2 to centre more crops on tumour, and optionally a fourth for crops centred where the model being "
        "fine-tuned errs on tumours (lesions it misses, tumour it calls where there is none), found when the run "
        "starts", ratios, ["train"]))
    lesion_balanced_crops: bool = field(default=False, metadata=_option(
        "crops centred on tumour pick every lesion alike, not in proportion to its volume (with crop_ratios; "
        "lib/trainers/lesion_centres.py)", request=["train"]))
    learning_rate: float = field(default=5e-4, metadata=_option("Adam learning rate", positive, ["train"]))
    lr_schedule: str = field(default="constant", metadata=_option(
        "the learning rate over a run: constant (the seed's) or cosine (from learning_rate down to a hundredth of it "
        "at the last of max_epochs; lib.trainers.lr_schedule)", one_of(*LR_SCHEDULES), ["train"]))
    loss: str = field(default="dicece", metadata=_option(
        "dicece (Dice plus cross-entropy; reached liver Dice 0.90 in 99 s against 426 s for Dice alone in `bench "
        "train`) or dice (the seed's)", one_of("dice", "dicece"), ["train"]))
    synth_prob: float = field(default=0.0, metadata=_option(
        "the chance that a training crop gets synthetic lesions painted into its liver (lib.transforms.synthesis; "
        "0: none)", unit_interval, ["train"]))
    synth_lesions: tuple[int, int] = field(default=(1, 3), metadata=_option(
        "how many synthetic lesions a crop gets: at least, at most", ordered_at_least(1), ["train"]))
    synth_size_mm: tuple[float, float] = field(default=(5.0, 40.0), metadata=_option(
        "the diameters of synthetic lesions (mm): smallest, largest", ordered_at_least(3.0), ["train"]))
    fatty_liver_prob: float = field(default=0.0, metadata=_option(
        "the chance that a training crop's liver (its vessels and tumours with it) is made fatty: its CT number "
        "lowered by a shift drawn from fatty_liver_hu (lib.transforms.liver_attenuation; 0: never)", unit_interval,
        ["train"]))
    fatty_liver_hu: tuple[float, float] = field(default=(-45.0, -25.0), metadata=_option(  # the generator's
        "the range (HU) a fatty liver's shift is drawn from, as the phantom generator draws it: lowest, highest",
        ordered_at_least(-200.0), ["train"]))
    fatty_liver_floor_hu: float = field(default=NO_FLOOR_HU, metadata=_option(
        "the lowest median CT number (HU) a liver made fatty is lowered to; a liver already under it is left as it "
        f"is ({NO_FLOOR_HU:g}: no floor; else within the window {HU_WINDOW[0]:g} to {HU_WINDOW[1]:g})",
        no_floor_or_in_window, ["train"]))
    bright_liver_prob: float = field(default=0.0, metadata=_option(
        "the chance that a training crop's enhanced liver (median at least 90 HU) is made brighter by a shift drawn "
        "from bright_liver_hu, as a larger contrast dose would (lib.transforms.liver_attenuation; 0: never)",
        unit_interval, ["train"]))
    bright_liver_hu: tuple[float, float] = field(default=(10.0, 30.0), metadata=_option(
        "the range (HU) a bright liver's rise is drawn from: lowest, highest", ordered_at_least(0.0), ["train"]))
    noise_prob: float = field(default=0.0, metadata=_option(
        "the chance that a training crop gets extra white noise, its standard deviation drawn up to noise_hu "
        "(0: never)", unit_interval, ["train"]))
    noise_hu: float = field(default=25.0, metadata=_option(
        "the largest standard deviation (HU) of that noise", not_negative, ["train"]))
    augment_prob: float = field(default=0.0, metadata=_option(
        "the chance of each of nnU-Net's default augmentations of a training crop, as MONAI's transforms: rotation "
        "and scaling, blur, brightness, simulated low resolution, gamma (lib.transforms.augment; 0: none)",
        unit_interval, ["train"]))
    tumour_weight: float = field(default=1.0, metadata=_option(
        "the weight of tumour in the cross-entropy and the Dice term (MONAI's DiceCELoss weighs both; background and "
        "liver 1)", positive, ["train"]))
    blob_weight: float = field(default=0.0, metadata=_option(
        "the weight of blob loss beside Dice and cross-entropy: one soft Dice per lesion of the crop, averaged, so "
        "each lesion counts once whatever its size (lib.trainers.blob_loss; 0: off)", not_negative, ["train"]))
    lesion_ce_weight: float = field(default=0.0, metadata=_option(
        "the weight of a per-lesion cross-entropy: each lesion's mean -log tumour probability, averaged over the "
        "crop's lesions, so a missed small lesion costs as much as a missed big one and its gradient does not vanish "
        "as blob loss's does (lib.trainers.blob_loss; 0: off)", not_negative, ["train"]))
    publish_metric: str = field(default="val_mean_dice", metadata=_option(
        "the validation number a run must improve on the model in use to publish (early stopping watches it too): "
        "val_mean_dice (liver and tumour Dice), or val_lesion_sensitivity (lesions of 10 mm or more found), "
        "val_lesions_matched (those found whose IoU with the tumour touching them is 0.5 or more: a tumour label "
        "spread over the liver finds every lesion and matches none) or val_tumour_global_dice, ties broken by mean "
        "Dice", one_of(*PUBLISH_METRICS), ["train"]))
    val_split: float = field(default=0.2, metadata=_option(
        "fraction of the labelled studies held out to validate", open_fraction, ["train"]))
    decathlon_dir: str = field(default="", metadata=_option(
        "a Task03_Liver folder added to the data: its split's 91 training cases train, its 26 validation cases "
        "validate, its 14 test cases are never used (empty: none)", request=["train"]))
    cache_mb: float = field(default=4096.0, metadata=_option(
        "memory for pre-processed studies during training (MB); the rest are read back from the disk cache in the "
        "model folder, which persists between runs", not_negative, ["train"]))
    cache_workers: int = field(default=2, metadata=_option(
        "threads that pre-process studies into the cache", at_least(1), ["train"]))
    loader_workers: int = field(default=0, metadata=_option(
        "processes that run training steps' random transforms (crops, lesion synthesis, augmentation) on the CPU "
        "while the model trains; 0: in the training process, on the GPU where there is one. On a GPU machine with "
        "many cores, several: made in the training process, the data bounded the H200's steps at 0.7 s", not_negative,
        ["train"]))
    amp_dtype: str = field(default="float16", metadata=_option(
        "CUDA mixed precision: float16 (with a gradient scaler) or bfloat16", one_of("float16", "bfloat16"),
        ["train"]))
    weight_average: float = field(default=0.99, metadata=_option(
        "decay of the moving average of the weights that is validated and published (0: the last step's "
        "weights)", fraction, ["train"]))
    retrain_every: int = field(default=0, metadata=_option(
        "start a training run after every N new final labels (0: never); never two runs at once", not_negative))
    # --- active learning
    mc_samples: int = field(default=5, metadata=_option(
        "MC-dropout passes per study for the uncertainty strategy", at_least(1)))
    uncertainty_spacing: tuple[float, float, float] = field(default=(2.0, 2.0, 2.0), metadata=_option(
        "voxel spacing (mm) at which uncertainty is computed; coarser is cheaper", positive))
    serve_window_s: float = field(default=1800.0, metadata=_option(
        "a study served to one client is not offered to another for this many seconds (0: no window)",
        not_negative))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f.name, getattr(self, f.name))

    @classmethod
    def from_conf(cls, conf: Mapping[str, str] | None) -> "Settings":
        """Parse MONAI Label's --conf strings; keys this app does not read are left to MONAI Label."""
        values: dict[str, Any] = {}
        try:
            for f in dataclasses.fields(cls):
                if f.name in (conf or {}) and conf[f.name] is not None:  # type: ignore[index]
                    values[f.name] = read(f.name, str(conf[f.name]))  # type: ignore[index]
            return cls(**values)
        except OptionError as e:
            raise OptionError(f"--conf {e}") from None

    @property
    def pretrained(self) -> Path | None:
        return _optional_path(self.pretrained_path)

    @property
    def liver_model(self) -> Path | None:
        return _optional_path(self.liver_model_path)

    @property
    def locator(self) -> Path | None:
        return _optional_path(self.locator_path)

    @property
    def pyliverlesionseg(self) -> Path | None:
        return _optional_path(self.pyliverlesionseg_path)


@dataclass(frozen=True)
class RequestOption:
    """An option that only a request sets (its default is a fixed value, or the --conf option it derives from)."""

    name: str
    default: Any
    help: str
    request: tuple[str, ...]
    check: Check | None = None


REQUEST_ONLY = (
    RequestOption("cascade", True, "find the liver with the locator first (default: true when there is a "
                  "locator, `locator_path`)", ("infer",)),
    RequestOption("fit_windows", True, "shrink the sliding windows to the region (false: `roi_size` windows)",
                  ("infer",)),
    RequestOption("uncertainty", False, "also report the model's mean entropy over the voxels it labels (0 to 1)",
                  ("infer",)),
    RequestOption("pretrained", True, "start from the model in use (false: from scratch)", ("train",)),
    RequestOption("resume", False, "go on with the run that was stopped or killed", ("train",)),
    RequestOption("seed", -1, "random seed of the run (-1: none)", ("train",), at_least(-1)),
    RequestOption("val_interval", 1, "validate every N epochs", ("train",), at_least(1)),
    RequestOption("early_stop_patience", 0, "stop after N validations without a better Dice (0: never)",
                  ("train",), not_negative),
    RequestOption("dataset", "StudyCache", "StudyCache (pre-processed once, kept between runs) or Dataset (no "
                  "cache)", ("train",), one_of("StudyCache", "Dataset")),
    RequestOption("dataloader", "ThreadDataLoader", "ThreadDataLoader or DataLoader", ("train",),
                  one_of("ThreadDataLoader", "DataLoader")),
    RequestOption("tracking", "None", "None or mlflow (MONAI Label's experiment tracking)", ("train",),
                  one_of("None", "mlflow")),
    RequestOption("multi_gpu", True, "one process per GPU when there are several (MONAI Label's own path)",
                  ("train",)),
    RequestOption("pseudo_labels", False, "also train on the labels the model trained on patients (pyliverlesionseg) "
                  "gives the unlabelled studies, made first where missing and kept under their own tag",
                  ("train",)),
    RequestOption("pseudo_label_weight", 0.5, "how often a pseudo-labelled study is drawn against a final label "
                  "(each final label is repeated round(1 / weight) times per epoch)", ("train",), positive_fraction),
    RequestOption("count", 1, "how many studies to offer", ("activelearning",), between(1, 100)),
)

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_REQUEST_ONLY = {o.name: o for o in REQUEST_ONLY}


# ---- reading
def read(name: str, value: Any) -> Any:
    """`value` for option `name` (a --conf string or a request's JSON value) as the option's type, checked.
    OptionError naming the option when it cannot be read or is not allowed."""
    default = _FIELDS[name].default if name in _FIELDS else _REQUEST_ONLY[name].default
    typed = _as_type(name, value, default)
    _check(name, typed, value)
    return typed


def request_options(request: Mapping[str, Any], scope: str, settings: Settings) -> dict[str, Any]:
    """Every option a `scope` request (infer, train or activelearning) may set, read from the request as --conf
    reads it, else its default (the --conf value for a --conf option). InvalidInput (422) naming the option for a
    bad value."""
    out: dict[str, Any] = {}
    names = [n for n, f in _FIELDS.items() if scope in f.metadata["request"]]
    names += [o.name for o in REQUEST_ONLY if scope in o.request]
    for name in names:
        if request.get(name) is None:
            out[name] = getattr(settings, name) if name in _FIELDS else _REQUEST_ONLY[name].default
            continue
        try:
            out[name] = read(name, request[name])
        except OptionError as e:
            raise InvalidInput(str(e)) from None
    return out


def crop_ratios(text: str) -> tuple[float, ...] | None:
    """'' -> None (the seed's foreground/background crops); '1,1,2' -> (1.0, 1.0, 2.0); a fourth number weighs
    crops centred where the model being fine-tuned errs on tumours. ValueError unless three or four non-negative
    numbers with a positive sum."""
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (3, 4) or not min(values) >= 0 or not sum(values) > 0:
        raise ValueError(f"crop_ratios must be three or four non-negative numbers, got {text!r}")
    return values


def parse_bool(text: str) -> bool:
    """true/false, 1/0, yes/no in any case; ValueError for anything else."""
    low = text.strip().lower()
    if low not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"expected true or false, got {text!r}")
    return low in ("true", "1", "yes")


def _as_type(name: str, value: Any, default: Any) -> Any:
    kind = _kind(default)
    try:
        if isinstance(default, tuple):
            items = value
            if isinstance(value, str):
                items = [p for p in value.replace("[", "").replace("]", "").replace(" ", "").split(",") if p]
            elif not isinstance(value, (list, tuple)):
                items = [value]
            items = list(items) * len(default) if len(items) == 1 else list(items)
            if len(items) != len(default):
                raise ValueError
            return tuple(_scalar(v, default[0]) for v in items)
        return _scalar(value, default)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be {kind}, got {value!r}") from None


def _scalar(value: Any, default: Any) -> Any:
    """One value as the type of `default`; ValueError when it is not one."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else parse_bool(str(value))
    if isinstance(value, bool):  # JSON true is no number
        raise ValueError
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, (int, str)):
            return int(value)
        raise ValueError
    if isinstance(default, float):
        if isinstance(value, (int, float, str)):
            return float(value)
        raise ValueError
    if not isinstance(value, str):
        raise ValueError
    return value


def _kind(default: Any) -> str:
    if isinstance(default, tuple):
        return f"{len(default)} {_kind(default[0]).removeprefix('a ')}s (or one for all)"
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    return "text"


def _check(name: str, typed: Any, given: Any = None) -> None:
    check = _FIELDS[name].metadata["check"] if name in _FIELDS else _REQUEST_ONLY[name].check
    problem = check(typed) if check else None
    if problem:
        raise OptionError(f"{name} {problem}, got {(typed if given is None else given)!r}")


# ---- documentation
def documentation() -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str, str, str]]]:
    """Rows (option, default, per request, meaning) of the --conf options and of the request-only ones."""
    conf = []
    for f in dataclasses.fields(Settings):
        default = {"pretrained_path": "the demo checkpoint", "locator_path": "the shipped locator",
                   "pyliverlesionseg_path": "pretrained/pyliverlesionseg.pt",
                   "second_reader_path": "pretrained/second_reader"}.get(
            f.name, _shown(f.default))
        conf.append((f.name, default, ", ".join(f.metadata["request"]), f.metadata["help"]))
    request = [(o.name, _shown(o.default), ", ".join(o.request), o.help) for o in REQUEST_ONLY]
    return conf, request


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(str(v) for v in default)
    if isinstance(default, bool):
        return str(default).lower()
    return "(empty)" if default == "" else str(default)
