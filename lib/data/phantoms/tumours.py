"""Liver tumours: number, size, shape, position and enhancement pattern across contrast phases."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .canvas import Canvas, Ellipsoid, rotation
from .liver import Liver
from .organs import Organs
from .tissues import DISPLACEABLE, LIVER_TISSUES, MAX_TUMOURS, PHASES, TUMOUR_BASE

KINDS = ("hypovascular", "hypervascular", "subtle")

# HU of a tumour relative to the liver, per phase (non-contrast, arterial, portal venous): (low, high)
CONTRAST = {
    # metastases (colorectal, pancreatic...): hypodense, most of all in the portal venous phase
    "hypovascular": ((-15, -5), (-35, -15), (-65, -30)),
    # hepatocellular carcinoma and hypervascular metastases: arterial wash-in, portal venous wash-out
    "hypervascular": ((-12, -3), (25, 60), (-28, -8)),
}
RIM = ((-6, 0), (12, 38), (4, 22))  # enhancing rim relative to the liver
NECROSIS_HU = (8, 30)  # necrotic core, absolute HU in every phase
SUBTLE_CNR = (0.5, 1.4)  # contrast-to-noise ratio of the barely visible ones


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

    def sdf(self, X, Y, Z):
        f = self.parts[0].sdf(X, Y, Z)
        for p in self.parts[1:]:
            f = np.minimum(f, p.sdf(X, Y, Z))
        return f

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
        kind = KINDS[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        d = float(np.exp(rng.uniform(np.log(3.0), np.log(d_max))))
        r = d / 2
        surface = bool(rng.uniform() < 0.2)
        pts = (_points_in_liver(rng, liver, organs, 1, -0.3 * r, 0.1 * r, r) if surface
               else _points_in_liver(rng, liver, organs, 1, -1e4, -0.7 * r, r))
        if len(pts) == 0:  # nowhere left that is deep enough: put it on the surface instead
            pts, surface = _points_in_liver(rng, liver, organs, 1, -0.3 * r, 0.1 * r, r), True
        if len(pts) == 0:
            continue
        c = pts[0]
        lobulated = bool(rng.uniform() < 0.5 and d > 8)
        if lobulated:
            parts = [Ellipsoid(tuple(c), (r * 0.8,) * 3)]
            for _ in range(int(rng.integers(2, 5))):
                u = rng.normal(size=3)
                u /= np.linalg.norm(u)
                parts.append(Ellipsoid(tuple(c + u * r * rng.uniform(0.3, 0.5)), (r * rng.uniform(0.45, 0.65),) * 3))
        else:
            axes = tuple(float(r * rng.uniform(0.85, 1.15)) for _ in range(3))
            parts = [Ellipsoid(tuple(c), axes, rotation(rng.uniform(0, 180, 3)))]

        rim = float(rng.uniform(2, 4)) if d > 12 and kind != "subtle" and rng.uniform() < 0.45 else 0.0
        necrosis = float(rng.uniform(0.3, 0.6)) if d > 30 and rng.uniform() < 0.6 else 0.0
        if kind == "subtle":
            contrast = float(rng.uniform(*SUBTLE_CNR) * noise_sd * (-1 if rng.uniform() < 0.75 else 1))
        else:
            contrast = float(rng.uniform(*CONTRAST[kind][p]))
        tumours.append(Tumour(
            kind, d, tuple(float(v) for v in c), lobulated, surface, rim, necrosis, contrast,
            float(rng.uniform(*RIM[p])), float(rng.uniform(*NECROSIS_HU)),
            float(rng.uniform(1, 3) if kind == "subtle" else rng.uniform(3, 8)), tuple(parts)))
    return tumours


def tumour_hu(t: Tumour, liver_hu: float) -> tuple[float, float, float]:
    """HU of a tumour's viable part, rim and necrotic core."""
    return liver_hu + t.contrast_hu, liver_hu + t.rim_hu, t.necrosis_hu


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
        part = np.zeros(f.shape, np.uint8)
        if t.rim_mm:
            part[f > -t.rim_mm] = 1
        if t.necrosis:
            part[f < -radius * (1 - t.necrosis)] = 2
        target[inside] = (TUMOUR_BASE + 3 * i + part)[inside]
