"""The one model of a liver lesion, used by the phantom generator (lib.data.phantoms.tumours) and by tumour
synthesis in training (lib.transforms.synthesis): its kind, size, shape, and how it looks in each contrast phase.

Kinds: hypovascular (metastases: hypodense, most of all in the portal venous phase), hypervascular
(hepatocellular carcinoma and hypervascular metastases: arterial wash-in, portal venous wash-out) and subtle
(barely visible: a contrast-to-noise ratio of 0.5 to 1.4). Sizes are log-uniform from 3 mm. Larger ones may be
lobulated, have an enhancing rim or a necrotic core, and all have a texture of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import Ellipsoid, rotation

KINDS = ("hypovascular", "hypervascular", "subtle")
KIND_ODDS = (0.5, 0.3, 0.2)
SMALLEST_MM = 3.0

# HU of a lesion relative to the liver, per phase (non-contrast, arterial, portal venous): (low, high)
CONTRAST = {
    "hypovascular": ((-15, -5), (-35, -15), (-65, -30)),
    "hypervascular": ((-12, -3), (25, 60), (-28, -8)),
}
RIM = ((-6, 0), (12, 38), (4, 22))  # enhancing rim relative to the liver
NECROSIS_HU = (8, 30)  # necrotic core, absolute HU in every phase
SUBTLE_CNR = (0.5, 1.4)  # contrast-to-noise ratio of the barely visible ones


@dataclass(frozen=True)
class Look:
    """How a lesion differs from the liver around it, in one phase."""

    rim_mm: float  # 0: no enhancing rim
    necrosis: float  # fraction of the radius that is necrotic, 0: none
    contrast_hu: float  # lesion minus liver
    rim_hu: float  # rim minus liver
    necrosis_hu: float  # absolute
    heterogeneity_hu: float  # amplitude of its texture


def draw_kind_and_size(rng: np.random.Generator, largest_mm: float, smallest_mm: float = SMALLEST_MM
                       ) -> tuple[str, float]:
    kind = KINDS[int(rng.choice(3, p=list(KIND_ODDS)))]
    return kind, float(np.exp(rng.uniform(np.log(smallest_mm), np.log(largest_mm))))


def draw_shape(rng: np.random.Generator, centre: np.ndarray, diameter_mm: float) -> tuple[bool, tuple[Ellipsoid, ...]]:
    """Round (a slightly irregular ellipsoid) or, for half of those over 8 mm, lobulated (a ball and 2 to 4 lobes)."""
    r = diameter_mm / 2
    lobulated = bool(rng.uniform() < 0.5 and diameter_mm > 8)
    if lobulated:
        parts = [Ellipsoid(tuple(centre), (r * 0.8,) * 3)]
        for _ in range(int(rng.integers(2, 5))):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            parts.append(Ellipsoid(tuple(centre + u * r * rng.uniform(0.3, 0.5)), (r * rng.uniform(0.45, 0.65),) * 3))
        return True, tuple(parts)
    axes = tuple(float(r * rng.uniform(0.85, 1.15)) for _ in range(3))
    return False, (Ellipsoid(tuple(centre), axes, rotation(rng.uniform(0, 180, 3))),)


def draw_look(rng: np.random.Generator, kind: str, diameter_mm: float, phase_index: int, noise_sd: float) -> Look:
    """Rim, necrosis, contrast (the subtle ones' from the study's noise) and texture, in phase `phase_index`
    (0 non-contrast, 1 arterial, 2 portal venous)."""
    rim = float(rng.uniform(2, 4)) if diameter_mm > 12 and kind != "subtle" and rng.uniform() < 0.45 else 0.0
    necrosis = float(rng.uniform(0.3, 0.6)) if diameter_mm > 30 and rng.uniform() < 0.6 else 0.0
    if kind == "subtle":
        contrast = float(rng.uniform(*SUBTLE_CNR) * noise_sd * (-1 if rng.uniform() < 0.75 else 1))
    else:
        contrast = float(rng.uniform(*CONTRAST[kind][phase_index]))
    return Look(rim, necrosis, contrast, float(rng.uniform(*RIM[phase_index])), float(rng.uniform(*NECROSIS_HU)),
                float(rng.uniform(1, 3) if kind == "subtle" else rng.uniform(3, 8)))


def sdf(parts: tuple[Ellipsoid, ...], X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Signed distance-like field of the lesion (negative inside, mm): the union of its parts."""
    f = parts[0].sdf(X, Y, Z)
    for p in parts[1:]:
        f = np.minimum(f, p.sdf(X, Y, Z))
    return f


def part_of(field: np.ndarray, look: Look, diameter_mm: float) -> np.ndarray:
    """Per point of a field: 0 viable, 1 enhancing rim, 2 necrotic core."""
    part = np.zeros(field.shape, np.uint8)
    if look.rim_mm:
        part[field > -look.rim_mm] = 1
    if look.necrosis:
        part[field < -diameter_mm / 2 * (1 - look.necrosis)] = 2
    return part


def hu_of(look: Look, liver_hu: float) -> tuple[float, float, float]:
    """HU of the lesion's viable part, rim and necrotic core, next to a liver of `liver_hu`."""
    return liver_hu + look.contrast_hu, liver_hu + look.rim_hu, look.necrosis_hu
