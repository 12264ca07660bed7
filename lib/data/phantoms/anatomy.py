"""One patient's anatomy: body, organs, liver and tumours, painted in an order where each structure only
takes space from what may give way to it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import Body, paint_body
from .canvas import Canvas, Waves
from .liver import Liver, paint_gallbladder, paint_liver, sample_liver
from .organs import Organs, paint_organs, sample_organs
from .pelvis import Pelvis, paint_pelvic_frame, paint_rectum, sample_pelvis
from .tissues import TUMOUR_BASE, Tissue
from .tumours import Tumour, paint_tumours, sample_tumours

# texture amplitude (HU) per tissue: parenchymal heterogeneity, trabecular bone, lung markings
TEXTURE_HU = {Tissue.LIVER: 4.0, Tissue.SPLEEN: 4.0, Tissue.MARROW: 35.0, Tissue.LUNG: 25.0, Tissue.FAT: 6.0,
              Tissue.MUSCLE: 5.0, Tissue.KIDNEY_CORTEX: 6.0, Tissue.PANCREAS: 8.0, Tissue.FECES: 60.0}


@dataclass(frozen=True)
class Anatomy:
    body: Body
    liver: Liver
    organs: Organs
    pelvis: Pelvis
    tumours: tuple[Tumour, ...]
    fatty_liver: bool
    texture: Waves

    def paint(self, cv: Canvas) -> None:
        paint_body(self.body, cv)
        paint_pelvic_frame(self.pelvis, self.body, cv)
        paint_organs(self.organs, self.body, cv)
        paint_rectum(self.pelvis, cv, self.organs.texture)
        paint_liver(self.liver, cv)
        paint_tumours(list(self.tumours), cv)
        paint_gallbladder(self.liver, cv)

    def textured(self) -> dict[int, float]:
        """Texture amplitude per tissue id, tumours included."""
        amp = {int(k): v for k, v in TEXTURE_HU.items()}
        for i, t in enumerate(self.tumours):
            for part in range(3):
                amp[TUMOUR_BASE + 3 * i + part] = t.heterogeneity_hu
        return amp


def sample_anatomy(rng: np.random.Generator, body: Body, phase: str, noise_sd: float, fatty: bool,
                   pelvis_rng: np.random.Generator) -> Anatomy:
    """Everything but the body, which the acquisition is planned on and so is sampled first. The pelvis, added
    later, draws from its own stream so that everything above it stays as it was."""
    liver = sample_liver(rng, body)
    organs = sample_organs(rng, body, liver.hilum)
    tumours = sample_tumours(rng, liver, organs, phase, noise_sd)
    return Anatomy(body, liver, organs, sample_pelvis(pelvis_rng, body, organs), tuple(tumours), fatty,
                   Waves.sample(rng, 8, (6, 30), 1.0))
