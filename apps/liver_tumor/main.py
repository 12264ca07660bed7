"""The liver_tumor MONAI Label app: `monailabel start_server --app apps/liver_tumor --studies sample-data`.

As in MONAI Label's sample apps, each model is one TaskConfig in lib/configs (the model's name is its module's
name); this file wires them into the server and turns unusable requests into 4xx answers that name the problem.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
from typing import Any

import monailabel
import torch
from monailabel.config import settings as monailabel_settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore
from monailabel.utils.others.class_utils import get_class_names

import lib.configs
from lib import server_fixes
from lib.activelearning.basic import First, Random
from lib.activelearning.candidates import record_served, requested_count
from lib.configs.liver_tumor import DEFAULT_STRATEGY
from lib.data.atomic import save_json
from lib.datastore import CheckedLocalDatastore, check_id
from lib.dicom.datastore import SegDICOMWebDatastore
from lib.dicom.dicomweb import dicomweb_client
from lib.errors import InvalidInput, NotFound
from lib.infers.batch import BatchInfer
from lib.preannotate import choice
from lib.scoring.background import BackgroundScorer
from lib.serving.shutdown import Shutdown
from lib.serving.slots import InferenceSlots
from lib.settings import Settings
from lib.trainers import pseudo_labels
from lib.trainers.retrain import RetrainTrigger

logger = logging.getLogger(__name__)


def _uploaded(path: str) -> bool:
    """A file that MONAI Label's endpoints wrote for this request (an upload, or a session's image)."""
    if "\0" in path:  # no file name holds one (and os.path refuses it): an id, to be checked as one
        return False
    real = os.path.realpath(path)
    roots = [tempfile.gettempdir(), monailabel_settings.MONAI_LABEL_SESSION_PATH or ""]
    return os.path.isfile(real) and any(r and real.startswith(os.path.realpath(r) + os.sep) for r in roots)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _training_busy() -> bool:
    from monailabel.utils.async_tasks.utils import tasks

    return any(t.get("status") in ("SUBMITTED", "RUNNING") for t in tasks("train"))


class LiverTumorApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        server_fixes.check_version()  # another MONAI Label release: refuse to start, naming both
        self.settings = Settings.from_conf(conf)  # a bad --conf value stops the start here, named
        self.model_dir = os.path.join(app_dir, "model")
        self.models: dict[str, TaskConfig] = {}
        self._picking = threading.Lock()
        self.slots = InferenceSlots(self.settings.infer_concurrency)
        for c in sorted(get_class_names(lib.configs, "TaskConfig")):
            name = c.split(".")[-2].lower()
            module, cls = c.rsplit(".", 1)
            config: TaskConfig = getattr(__import__(module, fromlist=[cls]), cls)()
            config.init(name, self.model_dir, conf, None)
            self.models[name] = config
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="Liver and liver-tumour CT segmentation",
            description="3D UNet segmenting the liver and liver tumours in abdominal CT, with active learning",
            version=monailabel.__version__,
        )
        scoring = self._scoring_methods
        self.background = (BackgroundScorer(self.models["liver_tumor"].scorer, self.datastore, self.slots,
                                            scoring.get("label_change")) if "mc_dropout" in scoring else None)
        self.shutdown = Shutdown()
        self.retrain = RetrainTrigger(self.settings.retrain_every, os.path.join(self.model_dir, "retrain.json"),
                                      count_final=lambda: len(self.datastore().get_labeled_images()),
                                      busy=_training_busy, start=self._start_training)

    # ---- wiring
    def server_mode(self, mode: bool) -> None:
        """MONAI Label's server calls this as it starts the app: the moment to correct the server itself."""
        super().server_mode(mode)
        if mode:
            from monailabel.app import app  # the FastAPI app being started (imported by then)

            server_fixes.install(app)
            if self.background is not None:
                self.shutdown.on_start(lambda: self.background.stop(timeout=0))
            self.shutdown.install()

    def async_scoring(self, method, params=None):
        """MONAI Label starts a scoring subprocess per method here (at start-up, after each training run and each
        next-sample); in the server, the background scorer does that work (lib.scoring.background) and is woken.
        Elsewhere (a training subprocess, which would ask the server over HTTP) nothing: the server's scorer
        notices a new model by its version."""
        if self._server_mode and self.background is not None:
            self.background.wake(label_change=method in (None, "label_change"))
        return {}

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()  # DICOMweb: _init_dicomweb_datastore below
        return CheckedLocalDatastore(
            self.studies,
            extensions=monailabel_settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=monailabel_settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=monailabel_settings.MONAI_LABEL_DATASTORE_READ_ONLY,
            max_image_mb=self.settings.max_image_mb,
        )

    def _init_dicomweb_datastore(self) -> Datastore:
        # as MONAI Label's, without downloading dcmqi from GitHub at start-up: SEG is written in Python
        s = monailabel_settings
        client = dicomweb_client(self.studies, s.MONAI_LABEL_DATASTORE_USERNAME or s.MONAI_LABEL_DICOMWEB_USERNAME,
                                 s.MONAI_LABEL_DATASTORE_PASSWORD or s.MONAI_LABEL_DICOMWEB_PASSWORD,
                                 s.MONAI_LABEL_QIDO_PREFIX, s.MONAI_LABEL_WADO_PREFIX, s.MONAI_LABEL_STOW_PREFIX)
        cache = (s.MONAI_LABEL_DATASTORE_CACHE_PATH or s.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
        return SegDICOMWebDatastore(client=client, search_filter=s.MONAI_LABEL_DICOMWEB_SEARCH_FILTER,
                                    cache_path=cache or None, fetch_by_frame=s.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
                                    convert_to_nifti=s.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI)

    def init_infers(self):
        return {name: task for name, config in self.models.items() if (task := config.infer()) is not None}

    def init_trainers(self):
        return {name: task for name, config in self.models.items() if (task := config.trainer()) is not None}

    def init_batch_infer(self):
        return BatchInfer()

    def init_strategies(self):
        strategies = {}
        for config in self.models.values():
            strategies.update(config.strategy() or {})
        window = self.settings.serve_window_s
        strategies.update({"random": Random(window), "first": First(window)})
        # the default first: 3D Slicer offers the first one listed
        return {DEFAULT_STRATEGY: strategies.pop(DEFAULT_STRATEGY), **strategies}

    def init_scoring_methods(self):
        methods = {}
        for config in self.models.values():
            methods.update(config.scoring_method() or {})
        return methods

    # ---- who pre-annotates (lib.preannotate.choice)
    def info(self):
        """MONAI Label's info, with the model that pre-annotates listed first (3D Slicer's and OHIF's first
        choice) and why under `preannotation`."""
        chosen = self.preannotation()
        if chosen["model"] in self._infers:
            self._infers = {chosen["model"]: self._infers[chosen["model"]],
                            **{k: v for k, v in self._infers.items() if k != chosen["model"]}}
        scorer = self.models["liver_tumor"].scorer
        return {**super().info(), "preannotation": chosen, "background_scoring": scorer.progress(self.datastore())}

    def preannotation(self) -> dict[str, Any]:
        available = [name for name, task in self._infers.items() if task.info()["model"]["available"]]
        recorded = choice.read(self.model_dir)
        chosen = choice.choose(available, len(self.datastore().get_labeled_images()),
                               self.settings.preannotation_min_labels, recorded)
        if recorded.get("chosen") != chosen["model"]:  # kept for liver-tumor preannotate's default
            save_json({**recorded, "chosen": chosen["model"], "why": chosen["why"]},
                      os.path.join(self.model_dir, choice.CHOICE_FILE))
        return chosen

    def _compare_for_preannotation(self, trained: str | None) -> None:
        """After a training run: the app's model and the model trained on patients on that run's validation
        studies, with their final labels."""
        if trained != choice.OWN or choice.PATIENTS not in self._infers:
            return
        tasks = {name: self._infers[name] for name in (choice.OWN, choice.PATIENTS)}
        if not all(task.info()["model"]["available"] for task in tasks.values()):
            return
        validation = os.path.join(self.model_dir, choice.OWN, "validation.json")
        try:
            with open(validation) as f:
                studies = [(os.path.basename(d["image"]).split(".")[0], d["image"], d["label"]) for d in json.load(f)]
        except (OSError, ValueError):
            return
        logger.info("comparing %s and %s on %d validation studies for pre-annotation", *tasks, len(studies))
        versions = {name: task.info()["model"]["path"] for name, task in tasks.items()}
        record = choice.compare(tasks, studies, versions, self.model_dir, _default_device())
        logger.info("pre-annotation scores: %s (studies measured before with the same model, image and label: %s)",
                    record["scores"], record["reused"])

    # ---- retraining as labels accumulate
    def on_save_label(self, image_id: str, label_id: str) -> dict:
        return self.retrain.label_saved()

    def _start_training(self) -> bool:
        from monailabel.utils.async_tasks.task import AsyncTask

        started = True
        for model in self._trainers:
            task, _ = AsyncTask.run("train", request={"model": model}, enqueue=False)
            started = started and task is not None
        return started

    # ---- requests: unknown names are 404s, unusable input 422s (MONAI Label would answer 500)
    def infer(self, request: dict[str, Any], datastore=None):
        model = request.get("model")
        if model not in self._infers:
            raise NotFound(f"no model {model!r}: available are {', '.join(self._infers)}")
        image = request.get("image")
        if isinstance(image, str) and not _uploaded(image):
            check_id(image)  # an id, not a path: nothing outside the datastore is read
            if image not in (datastore or self.datastore()).list_images():
                raise NotFound(f"no image {image!r} in the datastore")
        device = str(request.get("device") or _default_device())
        # infer_concurrency at a time per device, on the device's own threads; the others wait their turn
        return self.slots.run(device, functools.partial(super().infer, request, datastore))

    def train(self, request: dict[str, Any]):
        self.check_train_request(request.get("model"), request)
        if self._trainers[request["model"]].options(request)["pseudo_labels"]:
            made = pseudo_labels.ensure(self.datastore(), self._infers[choice.PATIENTS], _default_device())
            logger.info("pseudo-labels: %d made for unlabelled studies", made)
        result = super().train(request)
        self._compare_for_preannotation(request.get("model"))
        return result

    def check_train_request(self, model: Any, request: dict[str, Any]) -> None:
        """A 404 for an unknown model, a 422 naming a bad option: before a run is queued (lib.server_fixes) and
        again where it runs."""
        if model not in self._trainers:
            raise NotFound(f"no trainable model {model!r}: available are {', '.join(self._trainers)}")
        options = self._trainers[model].options(request)
        patients = self._infers.get(choice.PATIENTS)
        if options["pseudo_labels"] and (patients is None or not patients.info()["model"]["available"]):
            raise InvalidInput("pseudo_labels needs the model trained on patients: run liver-tumor "
                               "pyliverlesionseg-model (or do not give --conf pyliverlesionseg_path none)")

    def next_sample(self, request: dict[str, Any]):
        strategy = request.get("strategy") or DEFAULT_STRATEGY
        if strategy not in self._strategies:
            raise NotFound(f"no strategy {strategy!r}: available are {', '.join(self._strategies)}")
        requested_count(request)  # a bad count is a 422 even when there is nothing left to pick
        # one pick at a time, each recorded as served before the next: concurrent annotators get different studies
        # (MONAI Label records only the first id, after answering)
        with self._picking:
            result = super().next_sample({**request, "strategy": strategy})
            if result:
                record_served(self.datastore(), result.get("ids", [result["id"]]), request.get("client_id"), strategy)
        return result

    def scoring(self, request: dict[str, Any], datastore=None):
        if request.get("method") not in self._scoring_methods:
            raise NotFound(f"no scoring method {request.get('method')!r}: available are "
                           f"{', '.join(self._scoring_methods)}")
        return super().scoring(request, datastore)
