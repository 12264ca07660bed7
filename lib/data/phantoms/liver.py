"""The liver: a smooth, study-specific shape (not an ellipsoid), its vessels, fissure and gallbladder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import Body
from .canvas import Box, Canvas, Ellipsoid, Segment, Waves, paint_sac, rotation, smooth_min
from .tissues import DISPLACEABLE, LIVER_TISSUES, Tissue


@dataclass(frozen=True)
class LiverShape:
    """Lobes blended into one surface, warped by a smooth random field and bounded by the diaphragm, the
    abdominal wall and a visceral (inferior) surface."""

    lobes: tuple[Ellipsoid, ...]
    blend: float
    warp: Waves
    visceral_normal: tuple[float, float, float]
    visceral_offset: float
    body: Body

    def sdf(self, X, Y, Z) -> np.ndarray:
        """Approximate signed distance to the liver surface (mm, negative inside); X, Y, Z broadcastable."""
        dx, dy, dz = self.warp(X, Y, Z)
        xw, yw, zw = X + dx, Y + dy, Z + dz
        f = self.lobes[0].sdf(xw, yw, zw)
        for lobe in self.lobes[1:]:
            f = smooth_min(f, lobe.sdf(xw, yw, zw), self.blend)
        nx, ny, nz = self.visceral_normal
        f = np.maximum(f, nx * xw + ny * yw + nz * zw - self.visceral_offset)
        # the liver fills the space under the diaphragm and against the wall, so both shape it unwarped
        f = np.maximum(f, Z - (self.body.dome_z(X, Y) - 5.0))
        return np.maximum(f, self.body.cavity.sdf(X, Y, Z) + 2.0)


@dataclass(frozen=True)
class Liver:
    shape: LiverShape
    box: Box
    hilum: np.ndarray
    portal_tree: tuple[Segment, ...]
    hepatic_tree: tuple[Segment, ...]
    fissure: tuple[float, float, float, float]  # x at origin, dx/dy, dx/dz, top z (fat cleft of the ligamentum teres)
    gallbladder: tuple[Ellipsoid, Ellipsoid] | None  # outer wall, lumen
    texture: Waves
    coarse_volume_ml: float


def _coarse_mask(shape: LiverShape, step: float = 4.0):
    """Liver voxels on a coarse grid: for the bounding box and for sampling points inside the liver."""
    xs = np.arange(-260, 200, step, dtype=np.float32)
    ys = np.arange(-220, 200, step, dtype=np.float32)
    zs = np.arange(-300, 80, step, dtype=np.float32)
    f = shape.sdf(xs[:, None, None], ys[None, :, None], zs[None, None, :])
    return (xs, ys, zs), f


def sample_liver_shape(rng: np.random.Generator, body: Body) -> LiverShape:
    s = rng.uniform(0.92, 1.14)  # linear size: livers of about 1.2 to 2.3 L
    a_c, b_c = body.cavity.a, body.cavity.b_ant
    j = lambda v, rel=0.08: v * rng.uniform(1 - rel, 1 + rel)  # noqa: E731
    right_ax = (j(70 * s), j(min(88 * s, 0.8 * (b_c + body.cavity.b_post))), j(82 * s))
    right = Ellipsoid((-(a_c - 0.82 * right_ax[0]), j(6, 1.0), -j(72 * s)), right_ax,
                      rotation((rng.normal(0, 6), rng.normal(0, 6), rng.normal(-8, 6))))
    left = Ellipsoid((j(8, 1.0), -j(0.42 * b_c), -j(38 * s)), (j(62 * s), j(42 * s), j(32 * s)),
                     rotation((rng.normal(-10, 6), rng.normal(12, 6), rng.normal(-10, 8))))
    medial = Ellipsoid((-j(28 * s), -j(0.35 * b_c), -j(78 * s)), (j(42 * s), j(38 * s), j(42 * s)))
    caudate = Ellipsoid((-j(12, 0.5), body.vb_y - j(34), -j(58 * s)), (j(24 * s), j(20 * s), j(34 * s)))
    lobes = [right, left, medial, caudate]
    if rng.uniform() < 0.15:  # Riedel's lobe: a tongue of the right lobe reaching down
        lobes.append(Ellipsoid((right.centre[0] - 10, right.centre[1] - 5, right.centre[2] - right_ax[2] * 0.9),
                               (j(26 * s), j(34 * s), j(48 * s))))
    n = np.array([rng.uniform(0.25, 0.55), rng.uniform(0.35, 0.7), -1.0])
    n /= np.linalg.norm(n)
    anchor = np.array([-40 * s, 0.0, -132 * s * rng.uniform(0.95, 1.08)])
    return LiverShape(tuple(lobes), float(rng.uniform(14, 24)), Waves.sample(rng, 7, (80, 220), 13.0, dims=3),
                      tuple(float(v) for v in n), float(n @ anchor), body)


def _grow(rng, shape: LiverShape, start, direction, radius, depth, out: list, min_radius=1.2):
    """A branching vessel tree grown from start while it stays inside the liver."""
    length = rng.uniform(16, 30) * (radius / 4.0) ** 0.35
    end = start + direction * length
    f_end = float(shape.sdf(*[np.float32(v) for v in end]))
    if f_end > -radius - 1.0:
        return
    r_end = radius * 0.92
    out.append(Segment(tuple(start), tuple(end), radius, r_end))
    if depth <= 0 or r_end * 0.72 < min_radius:
        return
    for _ in range(2):
        d = direction + rng.normal(0, 0.55, 3)
        d /= np.linalg.norm(d)
        _grow(rng, shape, end, d, r_end * rng.uniform(0.65, 0.8), depth - 1, out, min_radius)


def _inferior_surface(shape: LiverShape, x: float, y: float) -> float | None:
    zs = np.arange(-300, 60, 1.0, dtype=np.float32)
    f = shape.sdf(np.full_like(zs, x), np.full_like(zs, y), zs)
    inside = np.nonzero(f < 0)[0]
    return float(zs[inside[0]]) if inside.size else None


def sample_liver(rng: np.random.Generator, body: Body) -> Liver:
    shape = sample_liver_shape(rng, body)
    (xs, ys, zs), f = _coarse_mask(shape)
    ii, jj, kk = np.nonzero(f < 0)
    lo = np.array([xs[ii.min()], ys[jj.min()], zs[kk.min()]], np.float32) - 8
    hi = np.array([xs[ii.max()], ys[jj.max()], zs[kk.max()]], np.float32) + 8
    volume = ii.size * 4.0**3 / 1000.0

    # the hilum: just inside the visceral surface, right of the midline, in front of the caudate lobe
    front = body.vb_y - body.vb_axes[1]
    hx, hy = -body.vb_axes[0] - rng.uniform(10, 22), front - rng.uniform(30, 42)
    z_inf = _inferior_surface(shape, hx, hy)
    if z_inf is None:  # no liver above that point: take the liver voxel nearest to it
        pts = np.stack([xs[ii], ys[jj], zs[kk]], 1)
        z_inf = float(pts[np.argmin(np.abs(pts[:, 0] - hx) + np.abs(pts[:, 1] - hy)), 2])
    hilum = np.array([hx, hy, z_inf + 14.0])

    portal: list[Segment] = []
    for lobe in shape.lobes[:2]:
        d = np.asarray(lobe.centre) - hilum
        _grow(rng, shape, hilum, d / np.linalg.norm(d), rng.uniform(5, 6.5), 5, portal)
    hepatic: list[Segment] = []
    ivc_top = np.array([-body.vb_axes[0] * 1.05 - 4, front - 8,
                        shape.body.dome_z(np.float32(-20), np.float32(front)) - 25])
    for target in (shape.lobes[0].centre, shape.lobes[2].centre, shape.lobes[1].centre):
        d = np.asarray(target) - ivc_top + rng.normal(0, 10, 3)
        _grow(rng, shape, ivc_top + d / np.linalg.norm(d) * 8, d / np.linalg.norm(d), rng.uniform(5, 6.5), 4, hepatic)

    gallbladder = None
    if rng.uniform() > 0.12:  # the rest had a cholecystectomy
        gx, gy = hx - rng.uniform(8, 25), hy - rng.uniform(25, 45)
        gz = _inferior_surface(shape, gx, gy)
        if gz is not None:
            axes = (rng.uniform(14, 19), rng.uniform(14, 19), rng.uniform(30, 44))
            rot = rotation((rng.uniform(-55, -30), rng.uniform(-15, 15), 0))
            c = (gx, gy, gz + rng.uniform(4, 14))
            gallbladder = (Ellipsoid(c, axes, rot), Ellipsoid(c, tuple(a - 2.2 for a in axes), rot))

    fissure = (float(hx + rng.uniform(15, 30)), float(rng.uniform(-0.2, 0.2)), float(rng.uniform(-0.3, 0.3)),
               float(rng.uniform(-80, -50)))
    return Liver(shape, (lo, hi), hilum, tuple(portal), tuple(hepatic), fissure, gallbladder,
                 Waves.sample(rng, 8, (20, 80), 1.0), volume)


def paint_liver(liver: Liver, cv: Canvas) -> None:
    """The parenchyma, the fissure, the intrahepatic vessels, then the gallbladder in its fossa."""
    r = cv.region(liver.box)
    if r is None:
        return
    f = liver.shape.sdf(r.X, r.Y, r.Z)
    cv.liver_sdf[r.slices] = f
    target = cv.tissue[r.slices]
    target[(f < 0) & np.isin(target, DISPLACEABLE)] = Tissue.LIVER

    x0, dxdy, dxdz, ztop = liver.fissure
    front = float(liver.hilum[1])
    cv.paint(liver.box, lambda X, Y, Z: (np.abs(X - x0 - dxdy * (Y - front) - dxdz * Z) < 1.6) & (Y < front - 15)
             & (Z < ztop), Tissue.FAT, (Tissue.LIVER,))
    for tree, tissue in ((liver.portal_tree, Tissue.PORTAL_BRANCH), (liver.hepatic_tree, Tissue.HEPATIC_VEIN)):
        for seg in tree:
            cv.paint(seg.box(), lambda X, Y, Z, seg=seg: seg.sdf(X, Y, Z) < 0, tissue, LIVER_TISSUES)


def paint_gallbladder(liver: Liver, cv: Canvas) -> None:
    if liver.gallbladder is None:
        return
    wall, lumen = liver.gallbladder
    paint_sac(cv, wall, lumen, Tissue.GALLBLADDER_WALL, Tissue.BILE, DISPLACEABLE + LIVER_TISSUES)
