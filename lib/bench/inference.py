"""`liver-tumor bench infer`: the seed's inference pipeline and this app's /infer, side by side, same weights.

For each case and each pipeline, in a fresh process (so that peak resident memory is its own): the end-to-end
latency from the file on disk to the label written (median of `runs`), the time of each stage, the peak resident
memory, the network's share of the time and its achieved GFLOP/s, and Dice against ground truth; then Dice
between the two labels. Alone: the matrix-multiply peak and the network's forward pass on one window, fp32 and
bf16, on the same machine in the same run (--no-peaks leaves them out).

The baseline is the seed's pipeline as documented: the whole volume resampled to 1.0 mm, 160^3 windows, overlap
0.25, fp32, no cascade, no clean-up (the seed has none). Dice bounds are judged against the baseline's label after
this app's clean-up, computed untimed, so that they measure the speed levers and not the clean-up.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from monai.transforms import (
    AsDiscreted,
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
)
from torch.utils.flop_counter import FlopCounterMode

from ..data.atomic import save_nifti
from ..data.nifti import nifti_image
from ..data.phantoms import generate_study, write_study
from ..data.phantoms.study import study_paths
from ..metrics.dice import check_same_grid, dice_per_class
from ..model.autocast import cpu_has_bf16
from ..model.checkpoint import load_network, read_card
from ..settings import Settings
from ..transforms.postprocess import CleanUp
from ..transforms.preprocess import HU_WINDOW
from .infer_cases import CASES

BASELINE = {"spacing_mm": 1.0, "roi": 160, "overlap": 0.25, "dtype": "fp32", "cascade": False, "clean_up": False}
PHANTOM_SEED = 5


# what each lever gives, on the first case: the app with one or more of them taken away (parse_variant)
LEVERS = (
    "app:cascade=false,cpu_bf16=false,conf.channels_last=false,fit_windows=false",
    "app:cascade=false",
    "app:cpu_bf16=false",
    "app:conf.channels_last=false",
    "app:fit_windows=false",
)


@dataclass
class InferBenchConfig:
    cases: tuple[str, ...] = tuple(CASES)
    runs: int = 3
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    checkpoint: str | None = None  # None: the app's default (the demo checkpoint)
    pipelines: tuple[str, ...] = ("baseline", "app")
    levers: tuple[str, ...] = ()  # variants of the app run on the first case only (LEVERS)
    peaks: bool = True  # the machine's matrix-multiply peak and one-window forward rates (about 15 s on the CPU)


# ---- the cases
def case_files(name: str, work: Path) -> tuple[Path, Path]:
    """(image, ground truth) of a case, made once into `work`."""
    if name == "lits_117":
        from ..data.fixtures import lits_fixture, lits_wheel, write_fixture

        folder = work / "fixtures"
        if not (folder / "lits_117.nii.gz").exists():
            write_fixture(lits_fixture(lits_wheel()), folder)
        return folder / "lits_117.nii.gz", folder / "truth" / "lits_117.nii.gz"
    if name not in CASES:
        raise ValueError(f"unknown case {name!r}: choose from {', '.join(CASES)}")
    folder = work / name
    paths = study_paths(folder, f"phantom_{PHANTOM_SEED}_000")
    if not paths["image"].exists():
        write_study(generate_study(PHANTOM_SEED, 0, "full", geometry=CASES[name]), folder)
    return paths["image"], paths["label"]


# ---- the two pipelines, each a function image path -> (label path, per-stage seconds)
class NetworkClock:
    """Time spent inside the network's forward passes, and how many windows and voxels went through it."""

    def __init__(self, network: torch.nn.Module, device: str) -> None:
        self.seconds, self.windows, self.voxels, self._t, self.device = 0.0, 0, 0, 0.0, device
        network.register_forward_pre_hook(self._pre)
        network.register_forward_hook(self._post)

    def _sync(self) -> None:
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()

    def _pre(self, _module, inputs) -> None:
        self._sync()
        self.windows += int(inputs[0].shape[0])
        self.voxels += int(inputs[0].numel())
        self._t = time.perf_counter()

    def _post(self, _module, _inputs, _output) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._t


def baseline_pipeline(checkpoint: Path, device: str, out_dir: Path) -> tuple[Callable, NetworkClock, int]:
    """The seed's pipeline with MONAI's own transforms and inferer."""
    keys = "image"
    pre = Compose([
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
        Spacingd(keys=keys, pixdim=(BASELINE["spacing_mm"],) * 3, mode="bilinear"),
        ScaleIntensityRanged(keys=keys, a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys=keys, source_key=keys, allow_smaller=True),
    ])
    invert = Compose([AsDiscreted(keys="pred", argmax=True),
                      Invertd(keys="pred", transform=pre, orig_keys=keys, nearest_interp=True, to_tensor=True)])
    network = load_network(checkpoint, device=device)
    clock = NetworkClock(network, device)
    inferer = SlidingWindowInferer(roi_size=(BASELINE["roi"],) * 3, overlap=BASELINE["overlap"], sw_batch_size=1,
                                   mode="gaussian", sw_device=device, device=device)

    def run(image: Path) -> tuple[Path, dict[str, float]]:
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        d = pre({keys: str(image)})
        t["pre"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            d["pred"] = inferer(d[keys][None].to(device), network)[0]
        t["infer"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        d = invert(d)
        t["invert"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        label = d["pred"]
        out = out_dir / f"baseline_{image.name}"
        save_nifti(nifti_image(np.asarray(label[0].cpu()).astype(np.uint8), np.asarray(label.affine, float)), out)
        t["write"] = time.perf_counter() - t0
        return out, t

    return run, clock, BASELINE["roi"]


def parse_variant(pipeline: str) -> tuple[dict[str, str], dict[str, str]]:
    """'app' -> no changes; 'app:cascade=false,conf.channels_last=false' -> (request, --conf) changes."""
    request: dict[str, str] = {}
    conf: dict[str, str] = {}
    _, _, options = pipeline.partition(":")
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{pipeline!r}: options are key=value, got {item!r}")
        (conf if key.startswith("conf.") else request)[key.removeprefix("conf.")] = value
    return request, conf


def app_pipeline(checkpoint: Path | None, device: str, out_dir: Path, variant: str = "app"
                 ) -> tuple[Callable, NetworkClock, int]:
    """The app's InferTask, called as /infer calls it: default options, or a variant's (parse_variant)."""
    from ..configs.liver_tumor import LiverTumor

    request, conf = parse_variant(variant)
    config = LiverTumor()
    if checkpoint:
        conf["pretrained_path"] = str(checkpoint)
    # the app's model folder (empty: nothing is trained here) in the benchmark's own, not left behind in /tmp
    config.init("liver_tumor", tempfile.mkdtemp(prefix="bench-infer-model-", dir=out_dir), conf, None)
    task = config.infer()
    network = task._get_network(device, {})
    clock = NetworkClock(network, device)

    def run(image: Path) -> tuple[Path, dict[str, float]]:
        label_file, result = task({"image": str(image), "device": device, **request})
        out = out_dir / f"{variant.replace(':', '_').replace(',', '_').replace('=', '-')}_{image.name}"
        Path(label_file).replace(out)
        lat = result["latencies"]
        stages = {k: float(lat[k]) for k in ("pre", "infer", "invert", "post", "write")}
        for stage, transforms in (lat.get("transform") or {}).items():  # MONAI Label's per-transform times
            for name, seconds in transforms.items():
                stages[f"{stage.lower()}.{name}"] = float(seconds)
        run.region = result.get("region")  # type: ignore[attr-defined]
        return out, stages

    return run, clock, task.settings.roi_size[0]


def window_gflop(roi: int) -> float:
    """FLOPs of one forward pass of the seed's UNet on a roi^3 window (PyTorch's own counter), in GFLOP. A
    convolutional network's FLOPs grow with the voxels: other windows are counted in proportion."""
    from ..model.network import build_unet

    net = build_unet(0.0).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 1, roi, roi, roi))
    return counter.get_total_flops() / 1e9


def peak_resident_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the process image, so it starts afresh in a
    spawned child; getrusage's ru_maxrss keeps the parent's peak across fork and exec."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(pipeline: str, cfg: dict, image: str, out_dir: str, queue: mp.Queue) -> None:
    try:
        device = cfg["device"]
        checkpoint = Path(cfg["checkpoint"]) if cfg.get("checkpoint") else None
        if pipeline == "baseline":
            from ..settings import DEMO_CHECKPOINT

            run, clock, roi = baseline_pipeline(checkpoint or DEMO_CHECKPOINT, device, Path(out_dir))
        else:
            run, clock, roi = app_pipeline(checkpoint, device, Path(out_dir), pipeline)
        gflop_per_voxel = window_gflop(roi) / roi**3
        runs = []
        for _ in range(cfg["runs"]):
            clock.seconds, clock.windows, clock.voxels = 0.0, 0, 0
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            label, stages = run(Path(image))
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            total = time.perf_counter() - t0
            runs.append({"seconds": total, "stages": stages, "network_seconds": clock.seconds,
                         "windows": clock.windows, "network_gflop": clock.voxels * gflop_per_voxel,
                         "region": getattr(run, "region", None)})
        peak_rss_mb = peak_resident_mb()
        cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        queue.put({"label": str(label), "runs": runs, "peak_rss_mb": peak_rss_mb, "cuda_peak_mb": cuda_peak,
                   "roi": roi})
    except Exception as e:  # reported in the result, not lost in a child's stderr
        queue.put({"error": f"{type(e).__name__}: {e}"})


def run_pipeline(pipeline: str, cfg: InferBenchConfig, image: Path, out_dir: Path) -> dict:
    """One pipeline on one case in a fresh process: its peak memory is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(pipeline, asdict(cfg), str(image), str(out_dir), queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{pipeline} on {image.name}: {result['error']}")
    return result


# ---- the machine's peaks
def matmul_peak(dtype: torch.dtype, device: str, n: int = 2048, seconds: float = 2.0) -> float:
    """Best GFLOP/s of an n x n matrix multiply over a few seconds."""
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def forward_rates(device: str, roi: int = 160, repeats: int = 3) -> list[dict]:
    """The seed's UNet forward pass on one window: fp32, bf16 (or fp16 on CUDA), channels-last or not."""
    from ..model.network import build_unet

    gflop = window_gflop(roi)
    cuda = device.startswith("cuda")
    half = torch.float16 if cuda else torch.bfloat16
    rows = []
    for dtype in (None, half):
        if dtype is torch.bfloat16 and not cpu_has_bf16():
            continue
        for channels_last in (False, True):
            net = build_unet(0.0).eval().to(device)
            x = torch.rand(1, 1, roi, roi, roi, device=device)
            if channels_last:
                net, x = net.to(memory_format=torch.channels_last_3d), x.to(memory_format=torch.channels_last_3d)
            times = []
            with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
                for _ in range(repeats + 1):
                    if cuda:
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    net(x)
                    if cuda:
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            seconds = statistics.median(times[1:])
            rows.append({"dtype": "fp32" if dtype is None else str(dtype).replace("torch.", ""),
                         "channels_last": channels_last, "roi": roi, "seconds": round(seconds, 4),
                         "gflop_per_s": round(gflop / seconds, 1)})
    return rows


# ---- comparing labels
def compare_labels(labels: dict[str, Path], truth: Path) -> dict:
    t = nib.load(str(truth))
    truth_arr = np.asanyarray(t.dataobj).astype(np.uint8)
    arrays = {}
    for name, path in labels.items():
        img = nib.load(str(path))
        check_same_grid(img, t, f"the {name} label", "its image")
        arrays[name] = np.asanyarray(img.dataobj).astype(np.uint8)
    out: dict[str, Any] = {f"{name}_vs_truth": dice_per_class(a, truth_arr) for name, a in arrays.items()}
    if "baseline" in arrays:
        spacing = tuple(float(v) for v in nib.affines.voxel_sizes(t.affine))
        cleaned = CleanUp.of(Settings())(arrays["baseline"], spacing)
        out["baseline_cleaned_vs_truth"] = dice_per_class(cleaned, truth_arr)
        for name, a in arrays.items():
            if name != "baseline":
                out[f"{name}_vs_baseline"] = dice_per_class(a, arrays["baseline"])
    return out


def summarise_pipeline(result: dict) -> dict:
    runs = result["runs"]
    seconds = [r["seconds"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    net_s, windows = median_run["network_seconds"], median_run["windows"]
    return {
        "median_seconds": round(statistics.median(seconds), 2),
        "all_seconds": [round(s, 2) for s in seconds],
        "stages": {k: round(v, 2) for k, v in median_run["stages"].items()},
        "network_seconds": round(net_s, 2),
        "windows": windows,
        "network_gflop": round(median_run["network_gflop"], 1),
        "network_gflop_per_s": round(median_run["network_gflop"] / net_s, 1) if net_s else None,
        "peak_rss_mb": round(result["peak_rss_mb"]),
        "cuda_peak_mb": None if result["cuda_peak_mb"] is None else round(result["cuda_peak_mb"]),
        "region": median_run.get("region"),
    }


def run(work: Path, cfg: InferBenchConfig, progress: Callable[[str], None] = print) -> dict:
    started = time.time()
    device = cfg.device
    peaks, forward = {}, []
    if cfg.peaks:
        peaks = {"fp32": round(matmul_peak(torch.float32, device), 1)}
        if device.startswith("cuda"):
            peaks["fp16"] = round(matmul_peak(torch.float16, device), 1)
            peaks["bf16"] = round(matmul_peak(torch.bfloat16, device), 1)
        elif cpu_has_bf16():
            peaks["bf16"] = round(matmul_peak(torch.bfloat16, device), 1)
        progress(f"matrix-multiply peak GFLOP/s: {peaks}")
        forward = forward_rates(device)
        progress(f"forward pass on one 160^3 window: {forward}")
    cases = {}
    for name in cfg.cases:
        image, truth = case_files(name, work)
        out_dir = work / "labels" / name
        out_dir.mkdir(parents=True, exist_ok=True)
        header = nib.load(str(image))
        entry: dict[str, Any] = {"shape": list(header.shape),
                                 "spacing_mm": [round(float(v), 3) for v in nib.affines.voxel_sizes(header.affine)]}
        labels = {}
        for pipeline in (*cfg.pipelines, *(cfg.levers if name == cfg.cases[0] else ())):
            progress(f"{name}: {pipeline}, {cfg.runs} runs")
            result = run_pipeline(pipeline, cfg, image, out_dir)
            entry[pipeline] = summarise_pipeline(result)
            labels[pipeline] = Path(result["label"])
            progress(f"  {json.dumps(entry[pipeline])}")
        entry["dice"] = compare_labels(labels, truth)
        if "baseline" in entry and "app" in entry:
            entry["speedup"] = round(entry["baseline"]["median_seconds"] / entry["app"]["median_seconds"], 2)
        cases[name] = entry
    return {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "baseline": BASELINE, "matmul_peak_gflop_per_s": peaks, "forward_160": forward,
            "checkpoint": cfg.checkpoint or "the demo checkpoint",
            "checkpoint_spacing_mm": read_card(Path(cfg.checkpoint) if cfg.checkpoint else None).get("spacing_mm"),
            "runs": cfg.runs, "cases": cases, "seconds": round(time.time() - started, 1)}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"CUDA {torch.cuda.get_device_name(0)}"
    import platform

    return f"CPU {platform.processor() or platform.machine()}, bf16 {'yes' if cpu_has_bf16() else 'no'}"


def table(result: dict) -> str:
    """The short table: per case and pipeline, latency, speed-up, memory, network rate, Dice, region."""
    peak = result["matmul_peak_gflop_per_s"]
    lines = [f"{result['device']}, {result['threads']} threads; matmul peak GFLOP/s: "
             + (", ".join(f"{k} {v}" for k, v in peak.items()) or "not measured (--no-peaks)"),
             f"{'case':<18} {'median s':>8} {'speedup':>7} {'peak MB':>7} {'net GFLOP/s':>11} {'liver':>6} "
             f"{'tumour':>6} {'region':>6}  pipeline"]
    for name, c in result["cases"].items():
        for p in [k for k in c if k == "baseline" or k.startswith("app")]:
            r, d = c[p], c["dice"][f"{p}_vs_truth"]
            region = r.get("region") or {}
            speedup = f"{c['baseline']['median_seconds'] / r['median_seconds']:.1f}x" \
                if "baseline" in c and p != "baseline" else ""
            lines.append(f"{name:<18} {r['median_seconds']:>8.2f} {speedup:>7} {r['peak_rss_mb']:>7} "
                         f"{r['network_gflop_per_s'] or 0:>11.1f} {_fmt(d['liver']):>6} {_fmt(d['tumour']):>6} "
                         f"{_fmt(region.get('fraction_of_volume')) if region else '':>6}  {p}")
        if "baseline_cleaned_vs_truth" in c["dice"]:
            b = c["dice"]["baseline_cleaned_vs_truth"]
            lines.append(f"{'':<18} baseline after the app's clean-up: liver {_fmt(b['liver'])}, "
                         f"tumour {_fmt(b['tumour'])}")
    for f in result["forward_160"]:
        lines.append(f"forward pass, one 160^3 window, {f['dtype']}, channels-last {str(f['channels_last']).lower()}: "
                     f"{f['seconds']:.3f} s, {f['gflop_per_s']:.1f} GFLOP/s")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def plot(result: dict, out: Path) -> Path:
    """Stage times of each pipeline per case, stacked bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["cases"])
    widths = [max(2, sum(1 for p in result["cases"][n] if p == "baseline" or p.startswith("app"))) for n in names]
    fig, axes = plt.subplots(1, len(names), figsize=(2.2 * sum(widths), 4.5), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    colours = {"pre": "#4c72b0", "infer": "#dd8452", "invert": "#55a868", "post": "#c44e52", "write": "#8172b3"}
    for ax, name in zip(axes[0], names):
        c = result["cases"][name]
        pipes = [p for p in c if p == "baseline" or p.startswith("app")]
        for i, p in enumerate(pipes):
            bottom = 0.0
            for stage, colour in colours.items():
                v = c[p]["stages"].get(stage, 0.0)
                ax.bar(i, v, bottom=bottom, color=colour, label=stage if i == 0 else None)
                bottom += v
            ax.text(i, c[p]["median_seconds"], f"{c[p]['median_seconds']:.1f} s", ha="center", va="bottom")
        ax.set_xticks(range(len(pipes)), [p.replace(":", "\n").replace(",", "\n") for p in pipes], fontsize=7)
        ax.set_title(f"{name} ({'x'.join(map(str, c['shape']))})", fontsize=9)
        ax.set_ylabel("seconds (median run)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"bench infer on {result['device']}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
