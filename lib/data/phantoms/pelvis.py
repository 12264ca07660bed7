"""The pelvis below the lumbar spine: iliac wings lined by the iliacus and covered by the gluteal muscles, the
sacrum, the bladder, and the sigmoid colon and rectum that continue the descending colon.

Scans that reach below the kidneys (most of them) cross the iliac wings; abdomen-pelvis scans end at the bladder.
Real CT has bone, broad muscle and the bladder there, where version 1 of the generator had fat and bowel. (Runs
trained with nnU-Net's augmentations call a real bladder and fluid-filled bowel liver; the first version of this
pelvis in their training did not change that: docs/model-log.md.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import BIG, Body
from .canvas import Canvas, Ellipsoid, Waves, paint_sac, rotation, tube_path
from .organs import SOFT, Hollow, Organs, paint_hollow
from .tissues import Tissue

VERTEBRA = (Tissue.MARROW, Tissue.CORTICAL_BONE, Tissue.DISC, Tissue.CSF)
CORTEX_MM = 1.5
SACRUM_MM = 110.0  # from the promontory to the coccyx's tip, along z
ROOF = 0.8  # the iliac crest, as a fraction of the wing's shell height above its centre


@dataclass(frozen=True)
class Wing:
    """One ilium: a band of an ellipsoid's shell, open towards the front and the midline (the iliac fossa)."""

    shell: Ellipsoid
    side: float  # -1 right, +1 left
    # thicknesses along the shell's shortest axis (Ellipsoid.sdf's scale): up to 1.7 times more at its sides
    bone: float
    iliacus: float  # the muscle lining its inner surface
    gluteal: float  # the muscles covering its outer surface

    def depth(self, X, Y, Z) -> tuple[np.ndarray, np.ndarray]:
        """Ellipsoid.sdf of the shell (negative inside) and whether a point lies in the band that the wing
        occupies: its dome cut off at the crest (ROOF of its height above the centre; the shell turns about z
        only, so that is a height), its front and its medial half open."""
        u, v, w = self.shell.local(X, Y, Z)
        a, b, c = self.shell.axes
        band = (w > -0.35 * c) & (w < ROOF * c) & (v > -0.45 * b) & (self.side * u > -0.05 * a)
        return self.shell.sdf(X, Y, Z), band


@dataclass(frozen=True)
class Pelvis:
    crest_z: float  # top of the iliac crests
    promontory_z: float  # where the sacrum begins
    wings: tuple[Wing, Wing]
    sacrum_axes: tuple[float, float]  # lateral, antero-posterior semi-axes at the promontory
    bladder: Ellipsoid
    bladder_wall: float
    rectum: Hollow


def sample_pelvis(rng: np.random.Generator, body: Body, organs: Organs) -> Pelvis:
    """Placed from the spine: the crests at about the fourth lumbar vertebra, the bladder behind the pubis."""
    rib12 = min(z for z, *_ in body.ribs)
    crest_z = float(rib12 - rng.uniform(3.6, 4.3) * body.vert_period)
    vx, vy = body.vb_axes
    wings = []
    for side in (-1.0, 1.0):
        x_c = rng.uniform(42, 55)
        a = min(rng.uniform(75, 92), body.muscle.a - x_c - 4)
        c = rng.uniform(80, 100)
        shell = Ellipsoid((side * x_c, body.vb_y - rng.uniform(30, 40), crest_z - ROOF * c),
                          (a, rng.uniform(55, 70), c), rotation((0, 0, side * rng.uniform(5, 15))))
        wings.append(Wing(shell, side, float(rng.uniform(4, 7)), float(rng.uniform(10, 18)),
                          float(rng.uniform(15, 35))))

    front_of_sacrum = body.vb_y - vy - rng.uniform(10, 18)
    r = rng.uniform(13, 18)
    s = rng.uniform(0.5, 1.3)  # filling
    base_z = crest_z - rng.uniform(170, 190)  # the bladder's base, behind the pubic symphysis
    axes = (rng.uniform(35, 50) * s, rng.uniform(28, 40) * s, rng.uniform(28, 45) * s)
    y_bladder = min(-0.45 * body.cavity.b_ant + axes[1] * 0.3, front_of_sacrum - r - 6 - axes[1])  # before the rectum
    bladder = Ellipsoid((rng.uniform(-10, 10), y_bladder, base_z + axes[2]), axes)

    over_bladder = max(crest_z - 110, base_z + 2 * axes[2] + r + 5)  # the sigmoid loops over the bladder's dome
    points = [organs.colon_end, [body.cavity.a * 0.25, -rng.uniform(10, 35), over_bladder],
              [rng.uniform(-15, 15), front_of_sacrum, crest_z - 135], [0, front_of_sacrum, crest_z - 160],
              [0, front_of_sacrum + 15, crest_z - 230]]
    radii = [r, r, r, r * 1.2, r]
    rectum = Hollow(tuple(tube_path(np.asarray(points, np.float32), np.asarray(radii, np.float32))), 3.0,
                    float(rng.uniform(0, 0.5)), Tissue.FECES, 0.0, Tissue.BOWEL_WALL)
    return Pelvis(crest_z, float(crest_z - rng.uniform(25, 40)), (wings[0], wings[1]),
                  (float(vx * 1.3 + rng.uniform(22, 30)), float(vy + rng.uniform(2, 5))), bladder,
                  float(rng.uniform(2, 4)), rectum)


def paint_pelvic_frame(p: Pelvis, body: Body, cv: Canvas) -> None:
    """Bone, muscle and the bladder, into the fat and the wall, after the body and before the abdominal organs."""
    # below the promontory the straight lumbar column the body paints gives way: its bodies to the pelvic fat,
    # its arches and canal to the back's muscles (first, as the wings reach into this box); then the sacrum there
    below_promontory = (np.array([-75, body.vb_y - 60, -BIG], np.float32),
                        np.array([75, body.canal_y + 60, p.promontory_z], np.float32))
    cv.paint(below_promontory, lambda X, Y, Z: np.where(Y > body.vb_y + body.vb_axes[1], Tissue.MUSCLE, Tissue.FAT),
             None, VERTEBRA)
    for wing in p.wings:
        def ilium(X, Y, Z, wing=wing):
            d, band = wing.depth(X, Y, Z)
            bone = band & (d < 0) & (d > -wing.bone)
            cortex = bone & ((d > -CORTEX_MM) | (d < CORTEX_MM - wing.bone))
            out = np.where(cortex, Tissue.CORTICAL_BONE, np.where(bone, Tissue.MARROW, 0))
            iliacus = band & (d <= -wing.bone) & (d > -wing.bone - wing.iliacus)
            # the glutei lie outside the cavity, within the muscle wall's outline
            gluteal = (band & (d >= 0) & (d < wing.gluteal) & body.muscle.inside(X, Y, Z)
                       & ~body.cavity.inside(X, Y, Z))
            return np.where(out > 0, out, np.where(iliacus | gluteal, Tissue.MUSCLE, 0)).astype(np.uint8)

        cv.paint(wing.shell.box(wing.gluteal), ilium, None, SOFT + (Tissue.MUSCLE,))

    vx, vy = p.sacrum_axes

    def sacrum(X, Y, Z):  # and coccyx, tilting backwards as they descend
        below = p.promontory_z - Z
        ax = np.maximum(vx - 0.3 * below, 10.0)
        r = np.sqrt((X / ax) ** 2 + ((Y - body.vb_y - 0.4 * below) / vy) ** 2)
        bone = (below > 0) & (below < SACRUM_MM) & (r < 1)
        return np.where(bone & (r > 1 - CORTEX_MM / vy), Tissue.CORTICAL_BONE,
                        np.where(bone, Tissue.MARROW, 0)).astype(np.uint8)

    cv.paint(below_promontory, sacrum, None, SOFT + (Tissue.MUSCLE,))  # at most 63 mm to either side

    # the bladder too, in front of the vessels: the small bowel's loops give way to it
    b = p.bladder
    paint_sac(cv, b, Ellipsoid(b.centre, tuple(a - p.bladder_wall for a in b.axes)), Tissue.MUSCLE, Tissue.FLUID, SOFT)


def paint_rectum(p: Pelvis, cv: Canvas, texture: Waves) -> None:
    """The sigmoid and rectum, into the fat the abdominal organs and vessels left."""
    paint_hollow(cv, p.rectum, texture)
