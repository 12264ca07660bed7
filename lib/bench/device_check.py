"""`liver-tumor device-check` (scripts/device-check): one prepared run on a GPU machine that tests the CUDA paths,
measures GPU speed and trains, within a wall-clock budget, writing one JSON and one PNG.

Steps, each a process of its own with its own time limit (a step that fails or runs out of time is recorded and
the others go on; the last gets what time is left):

1. environment: Python, torch, CUDA, the GPU, NumPy, and whether the app's modules import;
2. tests: the tests marked `cuda` (tests/test_cuda.py): /infer with AMP against the CPU, fp16 and bf16 training,
   one NCCL rank, the study cache and random transforms on the GPU;
3. bench infer: the 512 x 512 x 200 case, the seed's pipeline and the app's side by side (dry run: LiTS case 117,
   128^3, without the machine's peaks);
4. bench train: MONAI Label's BasicTrainTask set-up and the app's trainer, half a minute each;
5. phantoms: the demo recipe's training phantoms (its seed and sizes: made there, on all cores) as a datastore
   whose final labels are their ground truth, and held-out phantoms of another seed where the plan has any;
6. training: the recipe's tumour stage (GPU_STAGE) from the shipped checkpoint (or --start's) on those phantoms,
   until the time is up: on the CPU that stage stopped after 18 of its 30 epochs; the published model comes back as
   float16, and the last epoch's averaged weights as last.pt;
7. evaluation: the published model and the one it started from on the held-out phantoms (`bench accuracy`), where the
   plan has any (the GPU run leaves them to the CPU afterwards: its minutes go to training).

The dry run (`--dry-run`, CI's) runs the same steps on the CPU at tiny sizes, the tests with
LIVER_TUMOR_TEST_DEVICE=cpu.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree

from ..model.checkpoint import load_network, read_card, save_state_dict
from ..recipes.demo import RECIPE, STAGE_OPTIONS
from ..settings import APP_DIR, DEMO_CHECKPOINT
from ..trainers import resume

ROOT = APP_DIR.parents[1]
RESERVE_S = 20.0  # kept back from the budget to write the report
# The tumour stage (stage 2), which the CPU cut at 18 of 30 epochs while its validation still rose, with stage 3's
# fatty livers (the non-contrast livers it never learnt otherwise) and stage 3's lower rate, as the shipped model
# has been through both already; the best validation published. (On the CPU, its last 12 epochs then stage 3, run
# j, raised tumour Dice but found fewer lesions on the tuning phantoms: docs/model-log.md.) On the H200 an epoch of the
# 32 training phantoms took 15 to 22 s and a validation of the 8 others 33 s; the second run's 213 s reached epoch 4
# and was stopped in its first validation, so nothing was published. Its steps were bound by the random transforms in
# the training process (0.4 s a step of one core, 0.1 s since); in 14 loader processes an epoch of 32 steps should
# take a second or a few, and a validation of 8 studies 10 to 30 s: every 20 epochs, so that a few fit in the
# minutes of training, whichever of the two it turns out to be.
GPU_STAGE = {**RECIPE["stages"][1], "fatty_liver_prob": RECIPE["stages"][2]["fatty_liver_prob"],
             "learning_rate": RECIPE["stages"][2]["learning_rate"], "val_interval": 20}
STEP_NAMES = ("environment", "tests", "bench_infer", "bench_train", "phantoms", "training", "evaluation")


@dataclass(frozen=True)
class Plan:
    dry_run: bool
    budget_s: float = 500.0  # within a 9-minute call with the wheels' install (9 MB), 15 device minutes with the start
    device: str = "cuda"
    only: tuple[str, ...] = ()  # the steps to run (all when empty); the others are reported as not chosen
    # limits from the GPU runs (H200, 2026-11-30 and 12-04): 90, 80 and 80 s, then 150 s for bench train, too short
    tests_s: float = 150.0
    infer_case: str = "full_512x512x200"
    infer_runs: int = 2
    infer_s: float = 180.0
    train_minutes: float = 0.5
    bench_train_s: float = 240.0  # half a minute per trainer, their phantoms and start (80 s, then 150 s, ran out)
    train_phantoms: tuple[int, int] = (RECIPE["train_full"], RECIPE["train_medium"])  # full, medium
    heldout: tuple[str, int] = ("medium", 0)
    phantoms_s: float = 100.0  # 40 phantoms took 70 s on 16 cores
    train_conf: tuple[tuple[str, str], ...] = ()
    epochs: int = 1000  # the training step ends when its time is up, whichever comes first
    val_interval: int = GPU_STAGE["val_interval"]
    start: str = ""  # the checkpoint the training goes on from (empty: the shipped one)
    stage_conf: tuple[tuple[str, str], ...] = ()  # the training's options over GPU_STAGE's and the plan's (--conf)

    @property
    def options(self) -> dict[str, str]:
        """The plan's own training options with --conf's over them: what the training, the evaluation and the
        kept model's card (its spacing) go by."""
        return dict(self.train_conf + self.stage_conf)

    @staticmethod
    def make(dry_run: bool, budget_s: float | None = None, only: tuple[str, ...] = (), start: str = "",
             stage_conf: tuple[tuple[str, str], ...] = ()) -> "Plan":
        unknown = set(only) - set(STEP_NAMES)
        if unknown:
            raise ValueError(f"unknown steps {', '.join(sorted(unknown))}: choose from {', '.join(STEP_NAMES)}")
        if not dry_run:  # the study cache on every core and in the machine's memory (128 GB); the steps' random
            # transforms in processes on all cores but two (one process bounded the H200 at 0.7 s a step)
            cores = os.cpu_count() or 1
            return Plan(False, budget_s or 500.0, only=only, start=start, stage_conf=stage_conf,
                        train_conf=(("cache_workers", str(cores)), ("cache_mb", "65536"),
                                    ("loader_workers", str(max(1, cores - 2)))))
        tiny = (("spacing", "4"), ("crop_size", "32"), ("crops_per_volume", "2"), ("roi_size", "64"),
                ("loader_workers", "1"))
        return Plan(True, budget_s or 900.0, "cpu", only, tests_s=420.0, infer_case="lits_117", infer_runs=1,
                    infer_s=300.0, train_minutes=0.1, bench_train_s=200.0, train_phantoms=(0, 3),
                    heldout=("small", 1), train_conf=tiny, epochs=1,
                    val_interval=1, start=start, stage_conf=stage_conf)


@dataclass
class Step:
    name: str
    command: list[str]
    limit_s: float
    env: dict[str, str] = field(default_factory=dict)
    status: str = "not run"  # passed, failed, timed out, not run
    seconds: float = 0.0
    output_tail: str = ""
    result: dict[str, Any] = field(default_factory=dict)


def _python() -> list[str]:
    return [sys.executable]


def _cli(*args: Any) -> list[str]:
    return [*_python(), "-m", "lib.cli.main", *map(str, args)]


def _conf(pairs: tuple[tuple[str, str], ...], flag: str = "--conf") -> list[str]:
    return [a for k, v in pairs for a in (flag, k, v)]


def run_step(step: Step, log: Path) -> None:
    """Run the step's command in its own process group; kill the group at the limit."""
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(step.command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
                                     "PYTHONUNBUFFERED": "1", **step.env},
                                start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, step.limit_s))
            step.status = "passed" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            step.status = "timed out"
    step.seconds = round(time.monotonic() - started, 1)
    step.output_tail = log.read_text(errors="replace")[-3000:]


def environment() -> dict[str, Any]:
    """What the machine has, and whether the app's own modules import there (run as step 1, in a process)."""
    import numpy
    import torch

    found: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                             "numpy": numpy.__version__, "cuda": torch.cuda.is_available(),
                             "cpu_count": os.cpu_count(),  # loader processes hand their crops over in /dev/shm
                             "shm_gb": round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
                             if os.path.isdir("/dev/shm") else None}
    if torch.cuda.is_available():
        found.update(gpu=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda,
                     gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                     bf16=torch.cuda.is_bf16_supported(), nccl=torch.distributed.is_nccl_available())
    failed = {}
    for module in ("monai", "monailabel", "nibabel", "lib.configs.liver_tumor", "lib.trainers.liver_tumor",
                   "lib.bench.inference", "lib.bench.training", "lib.metrics.evaluate"):
        try:
            __import__(module)
        except Exception as e:  # what is missing on that machine is the finding
            failed[module] = f"{type(e).__name__}: {e}"
    found["imports_failed"] = failed
    return found


def _junit(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = []
    for case in suite.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = f"{tag}: {(element.get('message') or '')[:300]}"
        cases.append({"test": case.get("name"), "seconds": float(case.get("time", 0)), "outcome": outcome})
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")} | {"cases": cases}


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def make_phantoms_there(store: str, full: str, medium: str, heldout: str, preset: str, count: str) -> None:
    """The recipe's training phantoms as a datastore (ground truth as final labels) and the held-out ones, on every
    core (step 5, in a process)."""
    from ..data.phantoms.batch import make_phantoms
    from ..recipes.demo import training_datastore

    jobs = os.cpu_count() or 1
    training_datastore(Path(store), RECIPE["train_seed"], int(full), int(medium), jobs)
    if int(count):
        make_phantoms(Path(heldout), int(count), RECIPE["test_seed"], preset, start=0, jobs=min(int(count), jobs))


def steps(plan: Plan, work: Path) -> list[Step]:
    stage_conf = tuple((k, ",".join(map(str, v)) if isinstance(v, list) else str(v))
                       for k, v in GPU_STAGE.items() if k in STAGE_OPTIONS and k != "val_interval")  # a request's
    heldout, store, model_dir = work / "heldout", work / "store", work / "model"
    return [
        Step("environment", [*_python(), "-c", "import json; from lib.bench.device_check import environment; "
                                               "print(json.dumps(environment()))"], 60),
        # the dry run leaves out the bf16 training: amp_dtype is a CUDA choice, so on the CPU it would run fp16's again
        Step("tests", [*_python(), "-m", "pytest", "-v", "-m", "cuda", "tests/test_cuda.py", "-p", "no:cacheprovider",
                       *(["-k", "not bfloat16"] if plan.dry_run else []), f"--junitxml={work / 'tests.xml'}"],
             plan.tests_s,
             env={"LIVER_TUMOR_TEST_DEVICE": plan.device}),
        Step("bench_infer", _cli("bench", "infer", "--cases", plan.infer_case, "--runs", plan.infer_runs,
                                 "--device", plan.device, "--work", work / "infer", "--out", work / "infer",
                                 *(["--no-peaks"] if plan.dry_run else [])), plan.infer_s),
        Step("bench_train", _cli("bench", "train", "--minutes", plan.train_minutes, "--device", plan.device,
                                 "--work", work / "train", "--out", work / "train",
                                 *(["--train", 2, "--val", 1, "--preset", "small", "--spacing", 4, "--crop", 32,
                                    "--target", 0.01] if plan.dry_run else [])), plan.bench_train_s),
        Step("phantoms", [*_python(), "-c", "import sys; from lib.bench.device_check import make_phantoms_there; "
                                            "make_phantoms_there(*sys.argv[1:])",
                          str(store), *map(str, plan.train_phantoms), str(heldout), *map(str, plan.heldout)],
             plan.phantoms_s),
        Step("training", _cli("train", "--datastore", store, "--model-dir", model_dir,
                              "--epochs", plan.epochs, "--device", plan.device, "--seed", 0,
                              "--val-interval", plan.val_interval, "--single-process",
                              *_conf(stage_conf + tuple(plan.options.items())
                                     + ((("pretrained_path", plan.start),) if plan.start else ()))), 0),
        Step("evaluation", [*_python(), "-c", "import sys; from lib.bench.device_check import evaluate_models; "
                                              "evaluate_models(*sys.argv[1:])", str(model_dir), str(heldout),
                            str(work / "evaluation.json"), json.dumps(plan.options), plan.start],
             90 if plan.heldout[1] else 0),
    ]


def evaluate_models(model_dir: str, heldout: str, out: str, conf: str, start: str = "") -> None:
    """The model the training step published and the one it started from (`start`, else the shipped one), on the
    held-out phantoms, as bench accuracy measures them (run as step 7, in a process: both in it, each load of torch
    and MONAI costs seconds)."""
    import tempfile

    from ..configs.liver_tumor import LiverTumor
    from ..data.labelled import labelled_studies
    from ..data.phantoms.study import known_tumours
    from ..metrics.evaluate import evaluate, summarise

    cases = labelled_studies(Path(heldout))
    extra = {k: v for k, v in json.loads(conf).items() if k in ("spacing", "roi_size")}
    results = {}
    baseline = ("start", Path(start)) if start else ("shipped", DEMO_CHECKPOINT)
    for name, checkpoint in (("trained", Path(model_dir) / "liver_tumor.pt"), baseline):
        if not checkpoint.exists():
            results[name] = {"error": f"no checkpoint {checkpoint}"}
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:
                config = LiverTumor()
                config.init("liver_tumor", tmp, {**extra, "pretrained_path": str(checkpoint)}, None)
                results[name] = summarise(evaluate(config.infer(), cases, known=known_tumours))
        except Exception as e:  # the report says what failed; the other model is still measured
            results[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
    Path(out).write_text(json.dumps(results, indent=1))


def _collect(step: Step, work: Path) -> None:
    """The step's own results, from what it wrote."""
    if step.name == "environment":
        lines = [line for line in step.output_tail.splitlines() if line.startswith("{")]
        step.result = json.loads(lines[-1]) if lines else {}
    elif step.name == "tests":
        step.result = _junit(work / "tests.xml")
    elif step.name == "bench_infer":
        step.result = _json(work / "infer" / "infer.json")
    elif step.name == "bench_train":
        step.result = _json(work / "train" / "train.json")
    elif step.name == "training":
        run = work / "model" / "liver_tumor"
        stats = _json(run / "train_stats.json")
        step.result = {k: stats.get(k) for k in ("best_metric", "published_epoch", "total_time", "epoch")} | {
            "history": stats.get("history", []), "checkpoint": str(work / "model" / "liver_tumor.pt")}
    elif step.name == "evaluation":
        step.result = _json(work / "evaluation.json")


def run(plan: Plan, out: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Every step within plan.budget_s; writes device-check.json, device-check.png and the trained checkpoint
    (with its card and curves) into `out`."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    report: dict[str, Any] = {"plan": asdict(plan), "steps": []}
    todo = steps(plan, work)
    evaluation_s = todo[-1].limit_s
    for step in todo:
        left = plan.budget_s - RESERVE_S - (time.monotonic() - started)
        if step.name == "training":  # the time that is left, but what the evaluation needs
            step.limit_s = left - evaluation_s
        step.limit_s = round(min(step.limit_s, left), 1)
        if plan.only and step.name not in plan.only:
            step.status = "not run: not chosen"
        elif step.name == "evaluation" and not plan.heldout[1]:
            step.status = "not run: no held-out phantoms in this plan"
        elif step.limit_s < 5:
            step.status = "not run: no time left"
        else:
            progress(f"device-check: {step.name} (at most {step.limit_s:.0f} s)")
            run_step(step, work / f"{step.name}.log")
            _collect(step, work)
            progress(f"device-check: {step.name} {step.status} in {step.seconds} s")
        report["steps"].append(asdict(step))
    report["seconds"] = round(time.monotonic() - started, 1)
    report["summary"] = summary(report)
    try:
        _keep_model(work, out, _spacing(plan))
    except Exception as e:  # the report matters more than the weights: it is written whatever happens here
        report["keep_model_error"] = f"{type(e).__name__}: {e}"[:500]
    (out / "device-check.json").write_text(json.dumps(report, indent=1, default=str))
    plot(report, out / "device-check.png")
    shutil.rmtree(work, ignore_errors=True)
    return report


def _spacing(plan: Plan) -> list[float]:
    """The working spacing the training ran at: the plan's, else the card's of the checkpoint it started from."""
    given = plan.options.get("spacing")
    if given:
        return [float(given)] * 3
    return read_card(Path(plan.start) if plan.start else DEMO_CHECKPOINT).get("spacing_mm") or [1.0] * 3


def _keep_model(work: Path, out: Path, spacing_mm: list[float]) -> None:
    """The checkpoint the training step published (as float16: a file comes back from the GPU machine only under
    16 MB), with its card, its curves and the training's whole log (each step's time), out of the work folder; and
    the averaged weights of its last epoch, published or not (`last.pt`), so that minutes of GPU training can be
    measured on the CPU afterwards even where validation published nothing."""
    if (work / "training.log").exists():
        shutil.copy(work / "training.log", out / "training.log")
    resumes = sorted((work / "model" / "liver_tumor").glob("*/" + resume.FILENAME), key=lambda p: p.stat().st_mtime)
    if resumes:
        state = resume.read(resumes[-1])
        save_state_dict(resume.averaged_network(state), out / "last.pt", half=True,
                        meta={"epoch": state["epoch"], "run_id": state.get("run_id"), "spacing_mm": spacing_mm,
                              "weights": "the moving average of the weights at the end of that epoch (what "
                                         "validation measures), published or not"})
    model = work / "model" / "liver_tumor.pt"
    if model.exists():
        save_state_dict(load_network(model), out / "liver_tumor.pt", half=True)
        for extra in (work / "model" / "liver_tumor.json", *sorted((work / "model" / "liver_tumor").glob("*.png"))):
            if extra.exists():
                shutil.copy(extra, out / extra.name)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers a reader wants first."""
    by = {s["name"]: s for s in report["steps"]}
    out: dict[str, Any] = {"statuses": {n: s["status"] for n, s in by.items()}}
    tests = by["tests"]["result"]
    if tests:
        out["tests"] = {k: tests[k] for k in ("tests", "failures", "errors", "skipped")}
    for name, case in by["bench_infer"]["result"].get("cases", {}).items():
        out.setdefault("infer", {})[name] = {
            **{p: case[p]["median_seconds"] for p in ("baseline", "app") if p in case},
            "speedup": case.get("speedup"), "dice": case.get("dice")}
    trainers = by["bench_train"]["result"].get("trainers", {})
    if trainers:
        out["train_samples_per_s"] = {role: t.get("samples_per_s") for role, t in trainers.items()}
    evaluation = by["evaluation"]["result"]
    if evaluation:
        out["heldout"] = evaluation
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    steps_ = report["steps"]
    colours = ["tab:green" if s["status"] == "passed" else "tab:orange" if s["status"] == "timed out"
               else "tab:grey" if s["status"].startswith("not run") else "tab:red" for s in steps_]
    a.barh([s["name"] for s in steps_], [s["seconds"] for s in steps_], color=colours)
    a.barh([s["name"] for s in steps_], [s["limit_s"] for s in steps_], fill=False, edgecolor="black", lw=0.6)
    a.invert_yaxis()
    a.set_xlabel("seconds (box: the step's limit; green passed, red failed, orange timed out)")
    env = next((s["result"] for s in steps_ if s["name"] == "environment"), {})
    a.set_title(f"{env.get('gpu', 'no GPU')}, torch {env.get('torch', '?')}, {report['seconds']} s in all",
                fontsize=9)
    history = next((s["result"].get("history", []) for s in steps_ if s["name"] == "training"), [])
    epochs = [h.get("epoch") for h in history]
    for key, label in (("val_liver_dice", "liver Dice"), ("val_tumour_dice", "tumour Dice")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            b.plot(epochs, values, "o-", label=label)
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    start = report["plan"].get("start")
    b.set_title(f"training from {Path(start).name if start else 'the shipped checkpoint'} (validation)", fontsize=9)
    if history:
        b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
