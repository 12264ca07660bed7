"""Liver tumours of a phantom: how many, where, and how they are painted; each one drawn from the lesion model
shared with tumour synthesis (lib.data.phantoms.lesions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .canvas import Canvas, Ellipsoid
from .lesions import Look, draw_kind_and_size, draw_look, draw_shape, hu_of, part_of, sdf
from .liver import Liver
from .organs import Organs
from .tissues import DISPLACEABLE, LIVER_TISSUES, MAX_TUMOURS, PHASES, TUMOUR_BASE


@dataclass(frozen=True)
class Tumour:
    kind: str
    diameter_mm: float
    centre_mm: tuple[float, float, float]
    lobulated: bool
    surface: bool
    rim_mm: float  # 0: no enhancing rim
    necrosis: float  # fraction of the radius that is necrotic, 0: none
    contrast_hu: float  # tumour minus liver in this study's phase
    rim_hu: float
    necrosis_hu: float
    heterogeneity_hu: float
    parts: tuple[Ellipsoid, ...]

    @property
    def look(self) -> Look:
        return Look(self.rim_mm, self.necrosis, self.contrast_hu, self.rim_hu, self.necrosis_hu,
                    self.heterogeneity_hu)

    def sdf(self, X, Y, Z):
        return sdf(self.parts, X, Y, Z)

    def describe(self) -> dict:
        d = asdict(self)
        del d["parts"]
        d["appearance"] = "hypodense" if self.contrast_hu < 0 else "hyperdense"
        return d


def _count(rng: np.random.Generator) -> int:
    u = rng.uniform()
    if u < 0.15:
        return 0
    if u < 0.55:
        return int(rng.integers(1, 4))
    if u < 0.85:
        return int(rng.integers(4, 11))
    return int(rng.integers(11, 41))


def _points_in_liver(rng, liver: Liver, organs: Organs, n: int, lo_sdf: float, hi_sdf: float,
                     clearance: float) -> np.ndarray:
    """Up to n random points whose distance to the liver surface lies in [lo_sdf, hi_sdf] (mm, negative inside)
    and that lie at least `clearance` away from the solid organs that would cut into a tumour there."""
    lo, hi = liver.box
    found = []
    for _ in range(20):
        p = rng.uniform(lo, hi, size=(4096, 3)).astype(np.float32)
        f = liver.shape.sdf(p[:, 0], p[:, 1], p[:, 2])
        p = p[(f >= lo_sdf) & (f <= hi_sdf)]
        found.extend(p[organs.solid_sdf(p[:, 0], p[:, 1], p[:, 2]) > clearance])
        if len(found) >= n:
            break
    return np.array(found[:n])


def sample_tumours(rng: np.random.Generator, liver: Liver, organs: Organs, phase: str, noise_sd: float
                   ) -> list[Tumour]:
    """Tumours for a study; contrast depends on the phase, and the subtle ones on the study's noise."""
    p = PHASES.index(phase)
    count = min(_count(rng), MAX_TUMOURS)
    d_max = 80.0 if count <= 3 else (45.0 if count <= 10 else 25.0)
    tumours = []
    for _ in range(count):
        kind, d = draw_kind_and_size(rng, d_max)
        r = d / 2
        surface = bool(rng.uniform() < 0.2)
        pts = (_points_in_liver(rng, liver, organs, 1, -0.3 * r, 0.1 * r, r) if surface
               else _points_in_liver(rng, liver, organs, 1, -1e4, -0.7 * r, r))
        if len(pts) == 0:  # nowhere left that is deep enough: put it on the surface instead
            pts, surface = _points_in_liver(rng, liver, organs, 1, -0.3 * r, 0.1 * r, r), True
        if len(pts) == 0:
            continue
        c = pts[0]
        lobulated, parts = draw_shape(rng, c, d)
        look = draw_look(rng, kind, d, p, noise_sd)
        tumours.append(Tumour(kind, d, tuple(float(v) for v in c), lobulated, surface, look.rim_mm, look.necrosis,
                              look.contrast_hu, look.rim_hu, look.necrosis_hu, look.heterogeneity_hu, parts))
    return tumours


def tumour_hu(t: Tumour, liver_hu: float) -> tuple[float, float, float]:
    """HU of a tumour's viable part, rim and necrotic core."""
    return hu_of(t.look, liver_hu)


def paint_tumours(tumours: list[Tumour], cv: Canvas) -> None:
    """Each tumour i gets tissue ids TUMOUR_BASE + 3 i + part, inside the liver, bulging where it is superficial."""
    allowed = np.zeros(256, bool)
    allowed[list(LIVER_TISSUES)] = True
    allowed[TUMOUR_BASE:] = True
    displaceable = np.zeros(256, bool)
    displaceable[list(DISPLACEABLE)] = True
    for i, t in enumerate(tumours):
        radius = t.diameter_mm / 2
        c = np.asarray(t.centre_mm, np.float32)
        reg = cv.region((c - radius * 1.3, c + radius * 1.3))
        if reg is None:
            continue
        f = t.sdf(reg.X, reg.Y, reg.Z)
        target = cv.tissue[reg.slices]
        ok = allowed[target]
        if t.surface:  # a superficial tumour pushes the liver capsule out into the fat around it
            ok |= displaceable[target] & (cv.liver_sdf[reg.slices] < 0.5 * radius)
        inside = (f < 0) & ok
        target[inside] = (TUMOUR_BASE + 3 * i + part_of(f, t.look, t.diameter_mm))[inside]
