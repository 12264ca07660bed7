"""Every option the app reads from `--conf KEY VALUE`, typed, with its default and meaning, parsed once.

MONAI Label hands an app its `--conf` pairs as strings. They are parsed here, once, into one frozen object;
an unknown value fails the start with a message naming the option. The README's option table is this file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

APP_DIR = Path(__file__).resolve().parents[2] / "apps" / "liver_tumor"
DEMO_CHECKPOINT = APP_DIR / "pretrained" / "liver_tumor_phantoms.pt"
LOCATOR_CHECKPOINT = APP_DIR / "pretrained" / "liver_locator.pt"


@dataclass(frozen=True)
class Settings:
    # --- model
    pretrained_path: str = field(default=str(DEMO_CHECKPOINT), metadata={
        "help": "checkpoint to start from: a state dict, one nested under 'model', or TorchScript (Clara, MONAI "
                "bundle); 'none' for no pretrained model. Default: the demo checkpoint, trained on synthetic "
                "phantoms only"})
    spacing: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0), metadata={
        "help": "working voxel spacing in mm; when not given, the one on the model's card (1.0 for the demo)"})
    dropout: float = field(default=0.2, metadata={"help": "dropout of the UNet (used for MC-dropout uncertainty)"})
    # --- input
    max_image_mb: float = field(default=4096.0, metadata={
        "help": "largest image accepted, in MB of voxels (uncompressed); a NIfTI file's header is checked before "
                "anything is read"})
    # --- inference
    roi_size: tuple[int, int, int] = field(default=(160, 160, 160), metadata={
        "help": "largest sliding-window size in voxels; windows shrink to the smallest that cover the region with "
                "as many windows per axis (per request: roi_size; fit_windows false keeps them at this size)"})
    sw_overlap: float = field(default=0.25, metadata={"help": "sliding-window overlap; per request: sw_overlap"})
    sw_batch_size: int = field(default=1, metadata={"help": "windows per forward pass; per request: sw_batch_size"})
    amp: bool = field(default=True, metadata={"help": "mixed precision on CUDA (inference and training)"})
    cpu_bf16: bool = field(default=True, metadata={
        "help": "bfloat16 autocast on CPUs with AVX-512 BF16 or AMX (ignored on others); per request: cpu_bf16"})
    channels_last: bool = field(default=True, metadata={
        "help": "channels-last 3D memory layout for the network at inference (training does not use it: its "
                "backward pass gave NaN gradients here)"})
    locator_path: str = field(default=str(LOCATOR_CHECKPOINT), metadata={
        "help": "the small 4 mm UNet that finds the liver first, so that full resolution runs only around it; "
                "'none': the whole volume at full resolution. Per request: cascade (true or false)"})
    locator_margin_mm: float = field(default=25.0, metadata={
        "help": "the liver's box from the locator is widened by this much on every side"})
    tumour_margin_mm: float = field(default=5.0, metadata={
        "help": "tumour is kept only within this distance of the liver"})
    min_tumour_ml: float = field(default=0.02, metadata={"help": "tumour components smaller than this are removed"})
    # --- training (defaults of a train request; each can be overridden per request)
    max_epochs: int = field(default=50, metadata={"help": "epochs per training run"})
    crop_size: int = field(default=96, metadata={"help": "edge of the random training crops (voxels)"})
    crops_per_volume: int = field(default=4, metadata={"help": "random crops drawn from each volume per step"})
    crop_ratios: str = field(default="", metadata={
        "help": "empty: crops centred on foreground or background 1:1 (the seed's); or background,liver,tumour "
                "ratios such as 1,1,2 to centre more crops on tumour"})
    learning_rate: float = field(default=5e-4, metadata={"help": "Adam learning rate"})
    loss: str = field(default="dicece", metadata={
        "help": "dicece (Dice plus cross-entropy; reached liver Dice 0.90 in 99 s against 426 s for Dice alone in "
                "`bench train`) or dice (the seed's)"})
    val_split: float = field(default=0.2, metadata={"help": "fraction of the labelled studies held out to validate"})
    decathlon_dir: str = field(default="", metadata={
        "help": "a Task03_Liver folder added to the data: its split's 91 training cases train, its 26 validation "
                "cases validate, its 14 test cases are never used (empty: none)"})
    cache_mb: float = field(default=4096.0, metadata={
        "help": "memory for pre-processed studies during training (MB); the rest are read back from the disk "
                "cache in the model folder, which persists between runs. Per request: cache_mb"})
    cache_workers: int = field(default=2, metadata={"help": "threads that pre-process studies into the cache"})
    amp_dtype: str = field(default="float16", metadata={
        "help": "CUDA mixed precision: float16 (with a gradient scaler) or bfloat16. Per request: amp_dtype"})
    weight_average: float = field(default=0.99, metadata={
        "help": "decay of the moving average of the weights that is validated and published (0: the last step's "
                "weights). Per request: weight_average"})
    retrain_every: int = field(default=0, metadata={
        "help": "start a training run after every N new final labels (0: never); never two runs at once"})
    # --- active learning
    mc_samples: int = field(default=5, metadata={"help": "MC-dropout passes per study for the uncertainty strategy"})
    uncertainty_spacing: tuple[float, float, float] = field(default=(2.0, 2.0, 2.0), metadata={
        "help": "voxel spacing (mm) at which uncertainty is computed; coarser is cheaper"})
    serve_window_s: float = field(default=1800.0, metadata={
        "help": "a study served to one client is not offered to another for this many seconds (0: no window)"})

    @classmethod
    def from_conf(cls, conf: Mapping[str, str] | None) -> "Settings":
        """Parse MONAI Label's --conf strings; keys this app does not read are left to MONAI Label."""
        conf = conf or {}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in conf and conf[f.name] is not None:
                values[f.name] = _parse(f.name, str(conf[f.name]), f.default)
        s = cls(**values)
        s.validate()
        return s

    def validate(self) -> None:
        try:
            crop_ratios(self.crop_ratios)
        except ValueError as e:
            raise ValueError(f"--conf {e}") from None
        if self.locator_margin_mm < 0:
            raise ValueError(f"--conf locator_margin_mm must be 0 or more, got {self.locator_margin_mm}")
        if self.serve_window_s < 0:
            raise ValueError(f"--conf serve_window_s must be 0 or more, got {self.serve_window_s}")
        if self.amp_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"--conf amp_dtype must be float16 or bfloat16, got {self.amp_dtype!r}")
        if not 0 <= self.weight_average < 1:
            raise ValueError(f"--conf weight_average must be in [0, 1), got {self.weight_average}")
        if self.max_image_mb <= 0:
            raise ValueError(f"--conf max_image_mb must be positive, got {self.max_image_mb}")
        if self.cache_mb < 0 or self.retrain_every < 0:
            raise ValueError("--conf cache_mb and retrain_every must be 0 or more")
        if self.loss not in ("dice", "dicece"):
            raise ValueError(f"--conf loss must be dice or dicece, got {self.loss!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--conf dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.sw_overlap < 1:
            raise ValueError(f"--conf sw_overlap must be in [0, 1), got {self.sw_overlap}")
        if not 0 < self.val_split < 1:
            raise ValueError(f"--conf val_split must be in (0, 1), got {self.val_split}")
        for name in ("spacing", "uncertainty_spacing"):
            if any(v <= 0 for v in getattr(self, name)):
                raise ValueError(f"--conf {name} must be positive, got {getattr(self, name)}")
        for name in ("roi_size",):
            if any(v < 16 or v % 16 for v in getattr(self, name)):
                raise ValueError(f"--conf {name} must be multiples of 16, got {getattr(self, name)}")
        for name in ("sw_batch_size", "max_epochs", "crop_size", "crops_per_volume", "mc_samples", "cache_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"--conf {name} must be at least 1, got {getattr(self, name)}")

    @property
    def pretrained(self) -> Path | None:
        return None if self.pretrained_path.lower() in ("", "none") else Path(self.pretrained_path)

    @property
    def locator(self) -> Path | None:
        return None if self.locator_path.lower() in ("", "none") else Path(self.locator_path)

    @staticmethod
    def documentation() -> list[tuple[str, str, str]]:
        """(option, default, meaning) for the README."""
        rows = []
        for f in dataclasses.fields(Settings):
            default = f.default
            if f.name == "pretrained_path":
                default = "the demo checkpoint"
            elif f.name == "locator_path":
                default = "the shipped locator"
            elif isinstance(default, tuple):
                default = ",".join(str(v) for v in default)
            elif isinstance(default, bool):
                default = str(default).lower()
            elif default == "":
                default = "(empty)"
            rows.append((f.name, str(default), f.metadata["help"]))
        return rows


def crop_ratios(text: str) -> tuple[float, float, float] | None:
    """'' -> None (the seed's foreground/background crops); '1,1,2' -> (1.0, 1.0, 2.0). ValueError unless three
    non-negative numbers with a positive sum."""
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise ValueError(f"crop_ratios must be three non-negative numbers, got {text!r}")
    return values  # type: ignore[return-value]


def parse_bool(text: str) -> bool:
    """true/false, 1/0, yes/no in any case; ValueError for anything else."""
    low = text.strip().lower()
    if low not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"expected true or false, got {text!r}")
    return low in ("true", "1", "yes")


def _parse(name: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return parse_bool(text)
        if isinstance(default, tuple):
            parts = [p for p in text.replace("[", "").replace("]", "").replace(" ", "").split(",") if p]
            if len(parts) == 1:
                parts = parts * len(default)
            if len(parts) != len(default):
                raise ValueError
            return tuple(type(default[0])(p) for p in parts)
        return type(default)(text)
    except ValueError:
        raise ValueError(f"--conf {name}: cannot read {text!r} as {type(default).__name__}"
                         f"{' of ' + str(len(default)) if isinstance(default, tuple) else ''}") from None
