"""Body wall, spine, ribs, diaphragm and lower thorax: the frame the abdominal organs sit in.

Body frame: millimetres, x to the patient's left, y posterior, z superior (DICOM's LPS axes); the origin is on
the midline at the top of the right hemidiaphragm's dome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import Box, Canvas, Ellipsoid, rotation, superellipse_radius
from .tissues import Tissue

BIG = 1e4


@dataclass(frozen=True)
class Outline:
    """An axial superellipse outline with an angular ripple and a slow change of size along z."""

    a: float
    b_ant: float
    b_post: float
    p: float
    ripple: tuple[tuple[float, float], ...]  # (amplitude, phase) for angular orders 2, 3, 4
    z_wave: tuple[float, float, float]  # amplitude, wavelength, phase

    def inset(self, lateral: float, anterior: float, posterior: float) -> "Outline":
        return Outline(self.a - lateral, self.b_ant - anterior, self.b_post - posterior, self.p, self.ripple,
                       self.z_wave)

    def rho2d(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Normalised radius in the axial plane, before the z scaling (X (n,1,1), Y (1,m,1) -> (n,m,1))."""
        theta = np.arctan2(Y, X)
        ripple = 1.0
        for order, (amp, ph) in enumerate(self.ripple, start=2):
            ripple = ripple + amp * np.cos(order * theta + ph)
        return superellipse_radius(X, Y, self.a, self.b_ant, self.b_post, self.p) / ripple

    def z_scale(self, Z: np.ndarray) -> np.ndarray:
        amp, wl, ph = self.z_wave
        return 1.0 + amp * np.sin(2 * np.pi * Z / wl + ph)

    def inside(self, X, Y, Z) -> np.ndarray:
        return self.rho2d(X, Y) <= self.z_scale(Z)

    def sdf(self, X, Y, Z) -> np.ndarray:
        """Approximate signed distance to the outline (mm, negative inside)."""
        return (self.rho2d(X, Y) / self.z_scale(Z) - 1.0) * min(self.a, self.b_ant, self.b_post)

    def box(self, margin: float = 0.0) -> Box:
        s = 1.0 + abs(self.z_wave[0]) + sum(abs(a) for a, _ in self.ripple)
        lo = np.array([-self.a * s - margin, -self.b_ant * s - margin, -BIG], np.float32)
        hi = np.array([self.a * s + margin, self.b_post * s + margin, BIG], np.float32)
        return lo, hi


@dataclass(frozen=True)
class Body:
    skin: Outline
    fat: Outline  # inner border of the skin: subcutaneous fat inside
    muscle: Outline  # inner border of the fat: the muscular wall inside
    cavity: Outline  # inner border of the wall: the abdominal and thoracic cavity
    table_y: float
    # spine
    vb_y: float  # centre of the vertebral bodies
    vb_axes: tuple[float, float]  # lateral, antero-posterior semi-axes at z = 0
    vert_period: float
    disc: float
    vert_phase: float
    # diaphragm: two paraboloid domes
    dome_r: tuple[float, float, float, float, float]  # x, y, z of the top, lateral and AP curvature
    dome_l: tuple[float, float, float, float, float]
    ribs: tuple[tuple[float, float, float, float], ...]  # (z at the spine, drop, end angle, side sign)
    rib_size: tuple[float, float]  # radial thickness, height
    heart: Ellipsoid
    psoas_top: float

    @property
    def canal_y(self) -> float:
        return self.vb_y + self.vb_axes[1] + 10.0

    def dome_z(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Height of the diaphragm's upper surface above (X, Y)."""
        zs = []
        for x0, y0, z0, cx, cy in (self.dome_r, self.dome_l):
            # deeper behind: the posterior costophrenic recesses reach lower than the front of the domes
            zs.append(z0 - cx * (X - x0) ** 2 - cy * (Y - y0) ** 2 - 1.5 * cy * np.maximum(Y - y0, 0) ** 2)
        return np.maximum(zs[0], zs[1])


def sample_body(rng: np.random.Generator) -> Body:
    """Built from the inside out: the cavity's size does not follow the patient's fat."""
    habitus = rng.uniform(0, 1)  # 0 thin, 1 obese
    a_c = rng.uniform(118, 145)
    ripple = tuple((float(rng.uniform(0, 0.02)), float(rng.uniform(0, 2 * np.pi))) for _ in range(3))
    z_wave = (float(rng.uniform(0.0, 0.03)), float(rng.uniform(400, 900)), float(rng.uniform(0, 2 * np.pi)))
    cavity = Outline(a_c, a_c * rng.uniform(0.7, 0.8), a_c * rng.uniform(0.6, 0.68), float(rng.uniform(2.2, 2.7)),
                     ripple, z_wave)
    vb_axes = (float(rng.uniform(20, 25)), float(rng.uniform(15, 19)))
    vb_y = cavity.b_post - rng.uniform(38, 48)
    t_mus = rng.uniform(9, 15)
    post_wall = max(cavity.b_post + 1.4 * t_mus, vb_y + vb_axes[1] + 68) - cavity.b_post
    muscle = cavity.inset(-t_mus, -0.9 * t_mus, -post_wall)
    fat_lat, fat_ant, fat_post = (t * rng.uniform(0.8, 1.2) for t in (6 + 38 * habitus, 8 + 42 * habitus,
                                                                          5 + 25 * habitus))
    fat = muscle.inset(-fat_lat, -fat_ant, -fat_post)
    skin = fat.inset(-2.0, -2.0, -2.0)
    b_c = cavity.b_ant
    # domes: about 40 mm lower at the lateral wall, 60 at the front, 100 in the posterior recesses
    dome_r = (-0.45 * a_c, rng.uniform(-0.05, 0.15) * b_c, 0.0, rng.uniform(30, 50) / (0.3 * a_c**2),
              rng.uniform(50, 70) / b_c**2)
    dome_l = (0.45 * a_c, rng.uniform(-0.05, 0.15) * b_c, -rng.uniform(8, 28), rng.uniform(30, 50) / (0.3 * a_c**2),
              rng.uniform(50, 70) / b_c**2)
    period = rng.uniform(30, 35)
    # ribs 6 to 12 on both sides: heads one vertebra apart, descending towards the front
    ribs = []
    head12 = rng.uniform(-130, -105)
    for side in (-1.0, 1.0):
        for n in range(12, 5, -1):
            z_head = head12 + (12 - n) * period + rng.normal(0, 2)
            end = rng.uniform(1.5, 1.9) if n >= 11 else rng.uniform(2.6, 2.95)
            ribs.append((float(z_head), float(rng.uniform(120, 170)), float(end), side))
    heart = Ellipsoid(
        (float(rng.uniform(5, 25)), float(-0.35 * b_c), float(dome_l[2] + rng.uniform(45, 60))),
        (float(rng.uniform(55, 65)), float(rng.uniform(42, 50)), float(rng.uniform(50, 60))),
        rotation((0, 0, rng.uniform(20, 40))),
    )
    return Body(
        skin, fat, muscle, cavity, float(skin.b_post + rng.uniform(0.5, 3)), float(vb_y), vb_axes, float(period),
        float(rng.uniform(7, 10)), float(rng.uniform(0, period)), dome_r, dome_l, tuple(ribs),
        (float(rng.uniform(7, 9.5)), float(rng.uniform(11, 14))), heart, float(rng.uniform(-125, -95)),
    )


def paint_body(body: Body, cv: Canvas) -> None:
    """Table, body wall, lower thorax and spine (everything the abdominal organs are then painted into)."""
    # the patient table: a curved carbon shell filled with foam, below the body
    def table(X, Y, Z):
        top = body.table_y - 0.0006 * X**2  # the table top curves up at its edges
        inside = (np.abs(X) < 230) & (Y >= top) & (Y <= top + 45)
        shell = inside & ((Y <= top + 2.5) | (Y >= top + 42.5))
        return np.where(shell, Tissue.TABLE_SHELL, np.where(inside, Tissue.TABLE_FOAM, 0)).astype(np.uint8)

    cv.paint(None, table, over=(Tissue.AIR,))
    for outline, tissue in ((body.skin, Tissue.SKIN), (body.fat, Tissue.FAT), (body.muscle, Tissue.MUSCLE),
                            (body.cavity, Tissue.FAT)):
        cv.paint(outline.box(), outline.inside, tissue)

    # lower thorax: lungs above the diaphragm, the diaphragm muscle, the heart and the mediastinum
    def thorax(X, Y, Z):
        inside = body.cavity.inside(X, Y, Z)
        dz = Z - body.dome_z(X, Y)
        out = np.where(inside & (dz > 0), Tissue.LUNG, 0)
        out = np.where(inside & (dz > -5) & (dz <= 0), Tissue.MUSCLE, out)
        mediastinum = ((X - 5) / 32) ** 2 + ((Y - body.vb_y + 25) / 45) ** 2 < 1
        out = np.where(inside & mediastinum & (dz > 0), Tissue.FAT, out)
        out = np.where(inside & (dz > 2) & (body.heart.rho(X, Y, Z) < 1), Tissue.HEART, out)
        return out.astype(np.uint8)

    top = max(body.dome_r[2], body.dome_l[2])
    lo, hi = body.cavity.box()
    cv.paint((np.array([lo[0], lo[1], top - 250], np.float32), np.array([hi[0], hi[1], BIG], np.float32)), thorax)
    paint_spine(body, cv)
    paint_ribs(body, cv)


def paint_spine(body: Body, cv: Canvas) -> None:
    """Paraspinal and psoas muscles, vertebral bodies with discs, canal and posterior elements."""
    vx, vy = body.vb_axes
    cy = body.canal_y

    def muscles(X, Y, Z):
        paraspinal = ((np.abs(X) - 33) / 27) ** 2 + ((Y - cy - 30) / 24) ** 2 < 1
        r_psoas = np.clip(6 + 0.16 * (body.psoas_top - Z), 0, 26)
        psoas = (Z < body.psoas_top) & (((np.abs(X) - vx - 8 - r_psoas) / np.maximum(r_psoas, 1e-3)) ** 2
                                         + ((Y - body.vb_y - 4) / np.maximum(r_psoas * 0.9, 1e-3)) ** 2 < 1)
        return paraspinal | psoas

    cv.paint((np.array([-110, body.vb_y - 40, -BIG], np.float32), np.array([110, cy + 60, BIG], np.float32)),
             muscles, Tissue.MUSCLE, over=(Tissue.FAT, Tissue.LUNG))

    def vertebrae(X, Y, Z):
        grow = 1.0 + np.clip(-Z, 0, 300) * 0.0012  # vertebrae widen towards the lumbar spine
        r = np.sqrt((X / (vx * grow)) ** 2 + ((Y - body.vb_y) / (vy * grow)) ** 2)
        level = np.mod(Z - body.vert_phase, body.vert_period)
        in_disc = level < body.disc
        cortex = 1.8 / (vy * grow)
        out = np.where(r < 1, np.where(in_disc, Tissue.DISC, np.where(r > 1 - cortex, Tissue.CORTICAL_BONE,
                                                                      Tissue.MARROW)), 0)
        rc = np.sqrt(X**2 + (Y - cy) ** 2)
        ring = (rc < 13) & (Y > body.vb_y + vy * grow - 2)  # pedicles and laminae around the canal
        depth = (Y - cy) / 40.0  # the spinous process tapers backwards and slopes down
        spinous = (np.abs(X) < 4.5 * (1 - 0.5 * depth)) & (depth > 0) & (depth < 1) & ~in_disc
        mid = np.abs(level - body.disc - (body.vert_period - body.disc) / 2) < 0.2 * body.vert_period
        lumbar = Z < body.psoas_top  # transverse processes of the lumbar vertebrae (ribs carry the thoracic)
        transverse = mid & lumbar & (np.abs(Y - cy + 4) < 3.5) & (np.abs(X) < vx * grow + 20)
        out = np.where((ring | spinous | transverse) & (out == 0), Tissue.CORTICAL_BONE, out)
        out = np.where(rc < 8.5, Tissue.CSF, out)
        return out.astype(np.uint8)

    cv.paint((np.array([-75, body.vb_y - 40, -BIG], np.float32), np.array([75, cy + 55, BIG], np.float32)), vertebrae)


def paint_ribs(body: Body, cv: Canvas) -> None:
    """Ribs 6 to 12 on both sides: oblique bony arcs in the chest wall, cartilage towards the front.

    Ribs run obliquely through many slices, which no axis-aligned box captures well: each rib is drawn on the
    band of the wall where it lies, for just the columns whose rib height falls inside this canvas.
    """
    cav = body.cavity
    X, Y = cv.xs[:, None, None], cv.ys[None, :, None]
    rho = cav.rho2d(X, Y)[..., 0]
    radius = np.sqrt(X[..., 0] ** 2 + Y[..., 0] ** 2)
    thick, height = body.rib_size
    centre = 1.0 + (thick / 2 + 1.0) / min(cav.a, cav.b_ant)
    d_rad = (rho - centre) * radius / np.maximum(rho, 1e-3)  # mm from the rib's centre line, radially
    band_i, band_j = np.nonzero(np.abs(d_rad) < thick / 2)
    if band_i.size == 0:
        return
    bx, by = cv.xs[band_i], cv.ys[band_j]
    angle = np.arctan2(np.abs(bx), by)  # 0 at the back, pi at the front
    v = d_rad[band_i, band_j] / (thick / 2)
    zmin, zmax = float(cv.zs[0]), float(cv.zs[-1])
    for z_head, drop, end, side in body.ribs:
        on_side = (np.sign(bx) == side) & (angle > 0.45) & (angle < end)
        z_rib = z_head - drop * (angle - 0.45) / np.pi
        sel = np.nonzero(on_side & (z_rib > zmin - height) & (z_rib < zmax + height))[0]
        if sel.size == 0:
            continue
        u = (cv.zs[None, :] - z_rib[sel, None]) / (height / 2)
        r2 = u**2 + v[sel, None] ** 2
        inside = r2 < 1
        cartilage = angle[sel] > end - 0.5 if end > 2.2 else np.zeros(sel.size, bool)
        marrow = r2 < (1 - 3.0 / thick) ** 2
        tissue = np.where(cartilage[:, None], Tissue.CARTILAGE, np.where(marrow, Tissue.MARROW, Tissue.CORTICAL_BONE))
        ii, kk = np.nonzero(inside)
        target = cv.tissue[band_i[sel][ii], band_j[sel][ii], kk]
        keep = target != Tissue.AIR
        cv.tissue[band_i[sel][ii][keep], band_j[sel][ii][keep], kk[keep]] = tissue[ii, kk][keep]
