"""The pyliverlesionseg model: the liver and lesion networks of pyliverlesionseg 0.3 (KU Leuven, Apache-2.0),
trained on patients' CT, run with the package's own pre- and post-processing. Inference only: it is not trained
here."""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.config import TaskConfig

from ..infers.pyliverlesionseg import PyLiverLesionSegInfer
from ..model.checkpoint import read_card
from ..settings import Settings


class PyLiverLesionSeg(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        self.settings = Settings.from_conf(conf)
        self.weights = self.settings.pyliverlesionseg

    def description(self) -> str:
        card = read_card(self.weights)
        return ("Liver and liver-lesion segmentation of CT by pyliverlesionseg's two networks (3 mm liver, "
                "1 x 1 x 3 mm lesions), trained on " + card.get("trained_on", "patients' CT (SIRT, KU Leuven)"))

    def infer(self):
        """None with --conf pyliverlesionseg_path none: the app then leaves the model out."""
        return PyLiverLesionSegInfer(self.weights, self.settings, self.description()) if self.weights else None

    def trainer(self):
        return None

    def strategy(self):
        return None

    def scoring_method(self):
        return None
