"""A block of the render grid that structures are painted into, in the body frame (mm, x left, y posterior,
z superior), with the few implicit shapes the anatomy is built from.

Shapes are functions of broadcastable coordinate arrays X (n, 1, 1), Y (1, m, 1), Z (1, 1, k) that return a
boolean mask or a signed distance-like field (negative inside, in mm). Each structure is evaluated only inside
its bounding box, which keeps a 512 x 512 x 400 study to seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

Box = tuple[np.ndarray, np.ndarray]  # (low corner, high corner) in mm


@dataclass
class Region:
    """The part of a canvas inside a bounding box: index slices and the coordinates there."""

    slices: tuple[slice, slice, slice]
    X: np.ndarray
    Y: np.ndarray
    Z: np.ndarray


class Canvas:
    """Tissue ids on a grid given by 1-D body-frame coordinates of its voxel centres."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray):
        self.xs, self.ys, self.zs = (np.asarray(a, dtype=np.float32) for a in (xs, ys, zs))
        self.tissue = np.zeros((len(xs), len(ys), len(zs)), dtype=np.uint8)
        # signed distance to the liver surface (mm, negative inside), where the liver has been painted
        self.liver_sdf = np.full(self.tissue.shape, np.inf, dtype=np.float32)

    def region(self, box: Box | None) -> Region | None:
        """The voxels inside box (None: all), or None when the box misses this canvas."""
        idx = []
        for axis, coords in enumerate((self.xs, self.ys, self.zs)):
            if box is None:
                idx.append(slice(0, len(coords)))
                continue
            lo = int(np.searchsorted(coords, box[0][axis], side="left"))
            hi = int(np.searchsorted(coords, box[1][axis], side="right"))
            if hi <= lo:
                return None
            idx.append(slice(lo, hi))
        sx, sy, sz = idx
        return Region(
            (sx, sy, sz), self.xs[sx][:, None, None], self.ys[sy][None, :, None], self.zs[sz][None, None, :]
        )

    def paint(
        self,
        box: Box | None,
        shape: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
        tissue: int | None = None,
        over: Iterable[int] | None = None,
    ) -> None:
        """Paint a structure.

        shape returns a boolean mask (painted with `tissue`) or, when tissue is None, an integer array of
        tissue ids where 0 means "not here". `over` restricts painting to voxels that hold one of those tissues.
        """
        r = self.region(box)
        if r is None:
            return
        out = shape(r.X, r.Y, r.Z)
        target = self.tissue[r.slices]
        if tissue is None:
            ids = np.broadcast_to(out, target.shape)
            mask = ids > 0
        else:
            mask = np.broadcast_to(out, target.shape)
            ids = None
        if over is not None:
            mask = mask & np.isin(target, np.fromiter(over, dtype=np.uint8))
        if ids is None:
            target[mask] = tissue
        else:
            target[mask] = ids[mask]


# ---------------------------------------------------------------------------------------------------------
# implicit shapes


def superellipse_radius(x: np.ndarray, y: np.ndarray, a: float, b_ant: float, b_post: float, p: float):
    """Normalised superellipse radius in the axial plane (1 on the outline); posterior (y > 0) may be flatter."""
    b = np.where(y < 0, b_ant, b_post)
    return (np.abs(x / a) ** p + np.abs(y / b) ** p) ** (1.0 / p)


def rotation(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation matrix from angles about x, y and z (degrees)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid with centre, semi-axes and rotation (its axes are the columns of rot)."""

    centre: tuple[float, float, float]
    axes: tuple[float, float, float]
    rot: np.ndarray | None = None

    def box(self, margin: float = 0.0) -> Box:
        r = max(self.axes) + margin
        c = np.asarray(self.centre, dtype=np.float32)
        return c - r, c + r

    def local(self, X, Y, Z):
        dx, dy, dz = X - self.centre[0], Y - self.centre[1], Z - self.centre[2]
        if self.rot is None:
            return dx, dy, dz
        r = self.rot
        return (
            r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
            r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
        )

    def rho(self, X, Y, Z):
        """Normalised radius: < 1 inside."""
        u, v, w = self.local(X, Y, Z)
        a, b, c = self.axes
        return np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)

    def sdf(self, X, Y, Z):
        """Approximate signed distance (mm): exact on the surface's scale along the shortest axis."""
        return (self.rho(X, Y, Z) - 1.0) * min(self.axes)


def paint_sac(cv: Canvas, wall: Ellipsoid, lumen: Ellipsoid, wall_tissue: int, content: int,
              over: Iterable[int]) -> None:
    """A walled, fluid-filled organ (the gallbladder, the bladder): its wall, and its content inside the lumen."""
    cv.paint(wall.box(), lambda X, Y, Z: np.where(lumen.rho(X, Y, Z) < 1, content,
                                                  np.where(wall.rho(X, Y, Z) < 1, wall_tissue, 0)).astype(np.uint8),
             None, over)


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (blends two distance fields into one smooth union over a width k)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


@dataclass(frozen=True)
class Segment:
    """A tapered tube between two points (a vessel or bowel segment)."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    ra: float
    rb: float

    def box(self, margin: float = 0.0) -> Box:
        pa, pb = np.asarray(self.a, np.float32), np.asarray(self.b, np.float32)
        r = max(self.ra, self.rb) + margin
        return np.minimum(pa, pb) - r, np.maximum(pa, pb) + r

    def sdf(self, X, Y, Z):
        ax, ay, az = self.a
        d = np.asarray(self.b, np.float32) - np.asarray(self.a, np.float32)
        dd = float(d @ d) or 1e-6
        px, py, pz = X - ax, Y - ay, Z - az
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / dd, 0.0, 1.0)
        dist = np.sqrt((px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2)
        return dist - (self.ra + (self.rb - self.ra) * t)


def tube_path(points: np.ndarray, radii: np.ndarray) -> list[Segment]:
    """Segments along a polyline with a radius per point."""
    return [
        Segment(tuple(points[i]), tuple(points[i + 1]), float(radii[i]), float(radii[i + 1]))
        for i in range(len(points) - 1)
    ]


@dataclass(frozen=True)
class Waves:
    """A smooth random field: a sum of plane waves (used for shape deformation and tissue texture)."""

    k: np.ndarray  # (n, 3) wave vectors, rad/mm
    phase: np.ndarray  # (n,)
    amp: np.ndarray  # (n, d) amplitude per output component

    @staticmethod
    def sample(rng: np.random.Generator, n: int, wavelength: tuple[float, float], amp: float, dims: int = 1):
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        k = direction * (2 * np.pi / rng.uniform(*wavelength, size=(n, 1)))
        return Waves(
            k.astype(np.float32),
            rng.uniform(0, 2 * np.pi, n).astype(np.float32),
            (rng.normal(size=(n, dims)) * amp / np.sqrt(n)).astype(np.float32),
        )

    def __call__(self, X, Y, Z) -> list[np.ndarray]:
        out: list[np.ndarray] = [0.0] * self.amp.shape[1]  # type: ignore[list-item]
        for (kx, ky, kz), ph, amp in zip(self.k, self.phase, self.amp):
            s = np.sin(kx * X + ky * Y + kz * Z + ph)
            for d in range(len(out)):
                out[d] = out[d] + amp[d] * s
        return out
