"""Abdominal organs around the liver: great vessels, kidneys, spleen, pancreas, stomach and bowel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import Body
from .canvas import Canvas, Ellipsoid, Segment, Waves, rotation, tube_path
from .tissues import Tissue

SOFT = (Tissue.FAT,)  # organs are painted into visceral fat only, never over what is already there


@dataclass(frozen=True)
class Hollow:
    """A hollow viscus: tube segments with a wall, and gas that floats to the front (the patient lies supine)."""

    segments: tuple[Segment, ...]
    wall: float
    gas_fraction: float  # of the lumen's antero-posterior extent, from the front
    content: int  # what fills the rest of the lumen
    haustra: float  # period of wall folds along the tube (mm), 0 for none
    wall_tissue: int


@dataclass(frozen=True)
class Organs:
    aorta: tuple[Segment, ...]
    ivc: tuple[Segment, ...]
    portal: tuple[Segment, ...]  # extrahepatic portal, splenic and superior mesenteric veins
    kidneys: tuple[tuple[Ellipsoid, Ellipsoid, Ellipsoid], ...]  # outer, medulla, sinus
    spleen: tuple[Ellipsoid, Ellipsoid]  # outer, concave hilum cut
    pancreas: tuple[Segment, ...]
    stomach: Hollow
    bowel: tuple[Hollow, ...]  # the colon first, then the duodenum and small-bowel loops
    texture: Waves  # mottling of bowel content

    @property
    def colon_end(self) -> np.ndarray:
        """The lower end of the descending colon, where the sigmoid begins."""
        return np.asarray(self.bowel[0].segments[-1].b)

    def solid_sdf(self, X, Y, Z) -> np.ndarray:
        """Distance to the nearest solid organ or great vessel, which the liver and its tumours give way to."""
        parts = [k[0].sdf(X, Y, Z) for k in self.kidneys] + [self.spleen[0].sdf(X, Y, Z)]
        parts += [s.sdf(X, Y, Z) for s in (*self.aorta, *self.ivc, *self.portal, *self.pancreas)]
        return np.min(np.stack(parts), axis=0)


def _path(points, radii) -> tuple[Segment, ...]:
    return tuple(tube_path(np.asarray(points, np.float32), np.asarray(radii, np.float32)))


def _wander(rng, start, n, step, box_lo, box_hi):
    """A smooth random walk inside a box (small bowel loops)."""
    pts = [np.asarray(start, float)]
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    for _ in range(n):
        d = d + rng.normal(0, 0.6, 3)
        d /= np.linalg.norm(d)
        nxt = pts[-1] + d * step
        for ax in range(3):
            if not box_lo[ax] <= nxt[ax] <= box_hi[ax]:
                d[ax] = -d[ax]
        pts.append(np.clip(pts[-1] + d * step, box_lo, box_hi))
    return np.array(pts)


def sample_organs(rng: np.random.Generator, body: Body, hilum: np.ndarray) -> Organs:
    """Organs placed relative to the body frame and to the liver's hilum (where the portal vein enters)."""
    vx, vy = body.vb_axes
    a_c = body.cavity.a
    front = body.vb_y - vy
    z_lo = -600.0

    r_ao = rng.uniform(9, 13)
    x_ao = rng.uniform(6, 16)
    zs = np.arange(300, -250, -25.0)
    ao = np.stack([x_ao + 4 * np.sin(zs / 90 + rng.uniform(0, 6)), np.full_like(zs, front - r_ao - 1.5), zs], 1)
    aorta = list(_path(ao, np.full(len(zs), r_ao)))
    bif = ao[-1]
    for side in (-1, 1):  # common iliac arteries below the bifurcation
        aorta += _path([bif, bif + [side * 45, 10, -120], bif + [side * 70, 25, -300]], [r_ao * 0.7] * 3)

    r_ivc = rng.uniform(9, 12)
    x_ivc = -vx * rng.uniform(0.9, 1.2) - 4
    zs = np.arange(300, z_lo, -40.0)
    ivc = _path(np.stack([np.full_like(zs, x_ivc), np.full_like(zs, front - r_ivc + 2), zs], 1),
                np.full(len(zs), r_ivc))

    z_panc = float(hilum[2] - rng.uniform(5, 20))
    confluence = np.array([rng.uniform(0, 12), front - rng.uniform(28, 36), z_panc])
    r_pv = rng.uniform(6, 8)
    portal = _path([confluence, (confluence + hilum) / 2 + [0, -4, 6], hilum], [r_pv, r_pv, r_pv * 0.9])
    splenic_end = np.array([a_c * 0.6, front + 5, z_panc + 30])
    portal += _path([confluence, confluence + [30, 12, 6], splenic_end], [r_pv * 0.65] * 3)
    portal += _path([confluence, confluence + [-3, -8, -60], confluence + [-8, -15, -160]], [r_pv * 0.75] * 3)

    kidneys = []
    z_kr = rng.uniform(-150, -115)
    for side, z_k in ((-1, z_kr), (1, z_kr + rng.uniform(10, 25))):
        centre = (side * rng.uniform(58, 72), body.vb_y + rng.uniform(8, 20), z_k)
        axes = (rng.uniform(23, 28), rng.uniform(20, 25), rng.uniform(48, 58))
        rot = rotation((rng.uniform(-20, -10), side * rng.uniform(8, 18), side * rng.uniform(20, 40)))
        outer = Ellipsoid(centre, axes, rot)
        medulla = Ellipsoid(centre, tuple(x - 7 for x in axes), rot)
        sinus_c = tuple(np.asarray(centre) + rot @ np.array([-side * axes[0] * 0.55, 0, 0]))
        sinus = Ellipsoid(sinus_c, (axes[0] * 0.55, axes[1] * 0.4, axes[2] * 0.45), rot)
        kidneys.append((outer, medulla, sinus))

    sp_axes = (rng.uniform(22, 32), rng.uniform(45, 60), rng.uniform(45, 65))
    sp_c = (a_c - sp_axes[0] - rng.uniform(4, 15), body.vb_y + rng.uniform(-10, 20), rng.uniform(-75, -45))
    sp_rot = rotation((0, 0, rng.uniform(-35, -15)))
    spleen_cut = Ellipsoid(tuple(np.asarray(sp_c) + sp_rot @ np.array([-sp_axes[0] * 1.3, 0, 0])),
                           (sp_axes[0] * 0.9, sp_axes[1] * 0.7, sp_axes[2] * 0.7), sp_rot)
    spleen = (Ellipsoid(sp_c, sp_axes, sp_rot), spleen_cut)

    head = np.array([x_ivc - 5, front - 30, z_panc - 12])
    pancreas = _path(
        [head, [0, front - 42, z_panc], [a_c * 0.3, front - 30, z_panc + 10], splenic_end + [-12, 0, 5]],
        np.array([15, 12, 11, 8]) * rng.uniform(0.8, 1.1),
    )

    dome = body.dome_l[2]
    s = rng.uniform(0.75, 1.15)  # distension
    stomach = Hollow(
        _path([[a_c * 0.4, 10, dome - 40], [a_c * 0.35, -25, dome - 90], [a_c * 0.05, -45, dome - 120],
               [-a_c * 0.15, -35, dome - 110]], np.array([38, 34, 22, 14]) * s),
        float(rng.uniform(4, 6)), float(rng.uniform(0.1, 0.6)), Tissue.FLUID, 0.0, Tissue.STOMACH_WALL)

    r_col = rng.uniform(18, 24)
    z_hf = rng.uniform(-175, -150)
    colon_pts = [[-a_c * 0.6, -5, -320], [-a_c * 0.62, 5, -230], [-a_c * 0.55, -25, z_hf], [0, -body.cavity.b_ant * 0.6,
                 z_hf - rng.uniform(10, 50)], [a_c * 0.6, -10, rng.uniform(-125, -100)], [a_c * 0.65, 10, -220],
                 [a_c * 0.55, 0, -330]]
    colon = Hollow(_path(colon_pts, np.full(7, r_col)), 3.0, float(rng.uniform(0.3, 0.9)), Tissue.FECES, 22.0,
                   Tissue.BOWEL_WALL)
    duodenum = Hollow(_path([hilum + [-10, -5, -25], head + [-20, 5, 10], head + [-15, 10, -30], head + [25, 5, -45]],
                            np.full(4, rng.uniform(9, 12))), 2.5, float(rng.uniform(0, 0.4)), Tissue.FLUID, 0.0,
                      Tissue.BOWEL_WALL)
    bowel = [colon, duodenum]
    b_ant = body.cavity.b_ant
    for _ in range(int(rng.integers(4, 8))):  # small bowel: loops filling the lower abdomen
        lo = np.array([-a_c * 0.55, -b_ant * 0.8, -340.0])
        hi = np.array([a_c * 0.55, max(front - 25, lo[1] + 20), z_hf - 15])
        pts = _wander(rng, rng.uniform(lo, hi), int(rng.integers(10, 20)), 25.0, lo, hi)
        bowel.append(Hollow(_path(pts, np.full(len(pts), rng.uniform(10, 14))), 2.5, float(rng.uniform(0, 0.4)),
                            Tissue.FLUID, 0.0, Tissue.BOWEL_WALL))
    texture = Waves.sample(rng, 8, (15, 40), 1.0)
    return Organs(tuple(aorta), ivc, portal, tuple(kidneys), spleen, pancreas, stomach, tuple(bowel), texture)


def paint_tubes(cv: Canvas, segments, tissue: int, over=None) -> None:
    for seg in segments:
        cv.paint(seg.box(), lambda X, Y, Z, seg=seg: seg.sdf(X, Y, Z) < 0, tissue, over)


def paint_hollow(cv: Canvas, h: Hollow, texture: Waves) -> None:
    """Wall first along the whole tube, then the lumen, so that joints between segments stay open."""

    def fold(seg, X, Y, Z, sdf):
        if not h.haustra:
            return sdf
        return sdf + 2.0 * np.sin(2 * np.pi * (X + Y + Z) / h.haustra)

    for seg in h.segments:
        cv.paint(seg.box(3), lambda X, Y, Z, seg=seg: fold(seg, X, Y, Z, seg.sdf(X, Y, Z)) < 0, h.wall_tissue, SOFT)
    for seg in h.segments:
        front = min(seg.a[1], seg.b[1]) - max(seg.ra, seg.rb)
        depth = abs(seg.a[1] - seg.b[1]) + 2 * max(seg.ra, seg.rb)
        level = front + h.gas_fraction * depth

        def lumen(X, Y, Z, seg=seg, level=level):
            inside = fold(seg, X, Y, Z, seg.sdf(X, Y, Z)) < -h.wall
            content = h.content
            if content == Tissue.FECES:  # stool: mottled gas and solid
                mottle = texture(X, Y, Z)[0]
                content = np.where(mottle > 0.25, Tissue.GAS, Tissue.FECES)
            return np.where(inside, np.where(Y < level, Tissue.GAS, content), 0).astype(np.uint8)

        cv.paint(seg.box(), lumen, None, (h.wall_tissue,))


def paint_organs(o: Organs, body: Body, cv: Canvas) -> None:
    """Everything below the diaphragm except the liver, in an order where later organs never cut earlier ones."""
    paint_tubes(cv, o.aorta, Tissue.AORTA, SOFT + (Tissue.MUSCLE, Tissue.LUNG))
    paint_tubes(cv, o.ivc, Tissue.IVC, SOFT + (Tissue.MUSCLE, Tissue.LUNG, Tissue.HEART))
    for outer, medulla, sinus in o.kidneys:
        def kidney(X, Y, Z, outer=outer, medulla=medulla, sinus=sinus):
            out = np.where(outer.rho(X, Y, Z) < 1, Tissue.KIDNEY_CORTEX, 0)
            out = np.where((out > 0) & (medulla.rho(X, Y, Z) < 1), Tissue.KIDNEY_MEDULLA, out)
            return np.where((out > 0) & (sinus.rho(X, Y, Z) < 1), Tissue.FAT, out).astype(np.uint8)

        cv.paint(outer.box(), kidney, None, SOFT + (Tissue.MUSCLE,))
    outer, cut = o.spleen
    cv.paint(outer.box(), lambda X, Y, Z: (outer.rho(X, Y, Z) < 1) & (cut.rho(X, Y, Z) > 1)
             & (Z < body.dome_z(X, Y) - 5), Tissue.SPLEEN, SOFT)
    paint_tubes(cv, o.portal, Tissue.PORTAL_VEIN, SOFT)
    for seg in o.pancreas:
        cv.paint(seg.box(4), lambda X, Y, Z, seg=seg: seg.sdf(X, Y, Z) + 2.5 * np.sin((X - Y + Z) / 4.0) < 0,
                 Tissue.PANCREAS, SOFT)
    for hollow in (o.stomach, *o.bowel):
        paint_hollow(cv, hollow, o.texture)
