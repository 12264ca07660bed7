"""The liver_tumor model: network, labels, weights and options, handed to its infer, train, strategy and
scoring tasks."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from monailabel.interfaces.config import TaskConfig

from ..activelearning.clasp_pe import ClaSPPE
from ..activelearning.cold_start import ColdStart
from ..activelearning.diverse import UncertainDiverse
from ..activelearning.mc_dropout import MCDropout
from ..infers.liver_tumor import LiverTumorInfer
from ..model.checkpoint import load_network, read_card
from ..model.network import LABELS, build_unet
from ..scoring.label_change import LabelChange
from ..scoring.mc_dropout import MCDropoutScoring, UncertaintyScorer
from ..settings import DEMO_CHECKPOINT, Settings
from ..trainers.liver_tumor import LiverTumorTrain

# the strategy used when a request names none, and listed first. `liver-tumor bench al` (docs/active-learning.md)
# found no strategy whose tumour-Dice AUC beats random's by more than the seed-to-seed spread: random stays the default
DEFAULT_STRATEGY = "random"


class LiverTumor(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        self.settings = Settings.from_conf(conf)
        self.labels = LABELS
        self.network = build_unet(self.settings.dropout)
        pretrained = self.settings.pretrained
        if pretrained is not None:
            if not pretrained.exists():
                if pretrained.resolve() != DEMO_CHECKPOINT.resolve():
                    raise ValueError(f"--conf pretrained_path: no such file {pretrained}")
                pretrained = None  # a clone without the demo checkpoint starts with no model
            else:
                load_network(pretrained, self.settings.dropout)  # fails the start, naming what does not fit
        if self.settings.liver_model is not None:  # likewise
            load_network(self.settings.liver_model, self.settings.dropout)
        self.pretrained = pretrained
        self.published = Path(model_dir) / f"{name}.pt"
        current = self.current_model()
        card_spacing = read_card(Path(current) if current else None).get("spacing_mm")
        if "spacing" not in (conf or {}) and card_spacing:
            # a checkpoint's card records the spacing it was trained at: use it unless told otherwise
            self.settings = replace(self.settings, spacing=tuple(float(v) for v in card_spacing))
        self.path = [str(pretrained) if pretrained else None, str(self.published)]
        self.scorer = UncertaintyScorer(self.settings, self.current_model)

    def current_model(self) -> str | None:
        """The weights in use: the last published model, else the pretrained one."""
        if self.published.exists():
            return str(self.published)
        return str(self.pretrained) if self.pretrained else None

    def description(self) -> str:
        card = read_card(self.pretrained)
        origin = f" Pretrained weights: {card.get('trained_on', 'unknown data')}." if self.pretrained else ""
        return "Liver and liver-tumour segmentation of abdominal CT (3D UNet)." + origin

    def infer(self):
        return LiverTumorInfer(self.path, self.settings, self.description())

    def trainer(self):
        return LiverTumorTrain(
            model_dir=os.path.join(self.model_dir, self.name),
            settings=self.settings,
            publish_path=str(self.published),
            current_model=self.current_model,
            card={"model": self.name, "spacing_mm": list(self.settings.spacing)},
            description="Train the liver_tumor UNet on the final labels",
        )

    def strategy(self):
        window = self.settings.serve_window_s
        return {"uncertain_diverse": UncertainDiverse(self.scorer, window),
                "mc_dropout": MCDropout(self.scorer, window),
                "clasp_pe": ClaSPPE(self.scorer, window),
                "cold_start": ColdStart(self.scorer, window)}

    def scoring_method(self):
        return {"label_change": LabelChange(), "mc_dropout": MCDropoutScoring(self.scorer)}
