"""Tissue classes of the phantom, their CT numbers per contrast phase, and the label each maps to."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

PHASES = ("non_contrast", "arterial", "portal_venous")

BACKGROUND, LIVER, TUMOUR = 0, 1, 2
LABEL_NAMES = {"background": BACKGROUND, "liver": LIVER, "tumour": TUMOUR}


class Tissue(IntEnum):
    """Tissue ids painted into the phantom's tissue map (uint8). Tumours take ids from TUMOUR_BASE up."""

    AIR = 0
    TABLE_SHELL = 1
    TABLE_FOAM = 2
    SKIN = 3
    FAT = 4
    MUSCLE = 5
    CORTICAL_BONE = 6
    MARROW = 7
    DISC = 8
    CSF = 9
    CARTILAGE = 10
    LUNG = 11
    HEART = 12
    AORTA = 13
    IVC = 14
    PORTAL_VEIN = 15
    HEPATIC_VEIN = 16
    LIVER = 17
    GALLBLADDER_WALL = 18
    BILE = 19
    KIDNEY_CORTEX = 20
    KIDNEY_MEDULLA = 21
    SPLEEN = 22
    PANCREAS = 23
    STOMACH_WALL = 24
    BOWEL_WALL = 25
    GAS = 26
    FLUID = 27
    FECES = 28
    PORTAL_BRANCH = 29


# A tumour i is painted as TUMOUR_BASE + 3 i + part, part 0 = viable tissue, 1 = enhancing rim, 2 = necrotic core.
TUMOUR_BASE = 64
MAX_TUMOURS = 60

# Tissues that organs may push aside: the liver and its tumours paint over them, not over solid organs.
DISPLACEABLE = (Tissue.FAT, Tissue.BOWEL_WALL, Tissue.GAS, Tissue.FLUID, Tissue.FECES, Tissue.STOMACH_WALL)
LIVER_TISSUES = (Tissue.LIVER, Tissue.HEPATIC_VEIN, Tissue.PORTAL_BRANCH)

# (low, high) HU of each tissue per phase (non-contrast, arterial, portal venous); a study draws one value
# per tissue within the range. Sources: typical values in abdominal CT text books and radiology references.
HU_RANGES: dict[Tissue, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    Tissue.AIR: ((-1005, -995),) * 3,
    Tissue.TABLE_SHELL: ((150, 350),) * 3,
    Tissue.TABLE_FOAM: ((-920, -850),) * 3,
    Tissue.SKIN: ((20, 50), (25, 55), (30, 60)),
    Tissue.FAT: ((-115, -85),) * 3,
    Tissue.MUSCLE: ((40, 55), (45, 60), (50, 68)),
    Tissue.CORTICAL_BONE: ((700, 1200),) * 3,
    Tissue.MARROW: ((150, 320),) * 3,
    Tissue.DISC: ((70, 100),) * 3,
    Tissue.CSF: ((5, 15),) * 3,
    Tissue.CARTILAGE: ((100, 180),) * 3,
    Tissue.LUNG: ((-880, -820),) * 3,
    Tissue.HEART: ((35, 45), (250, 380), (140, 180)),
    Tissue.AORTA: ((35, 48), (250, 400), (140, 190)),
    Tissue.IVC: ((35, 45), (70, 110), (120, 170)),
    Tissue.PORTAL_VEIN: ((35, 45), (100, 150), (150, 200)),
    Tissue.PORTAL_BRANCH: ((35, 45), (90, 140), (145, 195)),
    Tissue.HEPATIC_VEIN: ((35, 45), (40, 60), (130, 180)),
    Tissue.LIVER: ((45, 66), (60, 84), (98, 125)),
    Tissue.GALLBLADDER_WALL: ((35, 45), (60, 90), (70, 100)),
    Tissue.BILE: ((0, 18),) * 3,
    Tissue.KIDNEY_CORTEX: ((30, 40), (150, 210), (150, 190)),
    Tissue.KIDNEY_MEDULLA: ((28, 36), (60, 95), (130, 170)),
    Tissue.SPLEEN: ((40, 52), (90, 130), (105, 128)),
    Tissue.PANCREAS: ((35, 48), (100, 140), (80, 110)),
    Tissue.STOMACH_WALL: ((35, 48), (70, 110), (80, 115)),
    Tissue.BOWEL_WALL: ((35, 48), (75, 110), (85, 120)),
    Tissue.GAS: ((-1000, -960),) * 3,
    Tissue.FLUID: ((0, 25),) * 3,
    Tissue.FECES: ((-250, 40),) * 3,
}

# Tissues whose CT number depends on each other: enhancement follows the liver's in a fatty liver.
FATTY_LIVER_SHIFT = (-45.0, -25.0)  # non-contrast HU shift of a fatty liver (applies in every phase)


def hu_table(phase: str, rng: np.random.Generator, fatty_liver: bool) -> np.ndarray:
    """One study's base CT number per tissue id (float32 lookup table of 256 entries)."""
    p = PHASES.index(phase)
    lut = np.full(256, -1000.0, dtype=np.float32)
    for tissue in Tissue:  # fixed order: one draw per tissue, whatever the phase
        lo, hi = HU_RANGES[tissue][p]
        lut[tissue] = rng.uniform(lo, hi)
    if fatty_liver:
        lut[Tissue.LIVER] += rng.uniform(*FATTY_LIVER_SHIFT)
    return lut


def label_lut() -> np.ndarray:
    """Map from tissue id to label class (0 background, 1 liver, 2 tumour)."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(LIVER_TISSUES)] = LIVER
    lut[TUMOUR_BASE : TUMOUR_BASE + 3 * MAX_TUMOURS] = TUMOUR
    return lut
