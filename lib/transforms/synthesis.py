"""Tumour synthesis on the fly: lesions painted into the liver of a training crop, their label set to 2.

Each lesion is drawn from the model the phantom generator draws its tumours from (lib.data.phantoms.lesions: kind, size,
shape, rim, necrosis, contrast per phase, texture), placed deep in the liver or (one in five) at its surface, and
painted as a change of CT number on top of what is there, so that the scan's own noise and texture stay: partial
volume at its edge (the fraction of each voxel it covers, 2 x 2 x 2 samples a voxel), its texture, and, for the
barely visible kind, a contrast set from the noise measured in that liver. It works on any CT with a liver label:
phantoms, real CT with a liver mask, and studies whose real tumours (label 2) stay as they are. It is not drawn
outside the liver: a superficial lesion is cut at the capsule here, where the phantoms' bulge out.

MONAI has transforms that paste or blend given patches, none that draws lesions from such a model.
"""

from __future__ import annotations

import functools
from typing import Callable, Hashable, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

from ..data.phantoms.lesions import draw_kind_and_size, draw_look, draw_shape, part_of, sdf
from ..data.phantoms.tissues import PHASES
from .preprocess import hu_to_window, window_to_hu

PHASE_ODDS = (0.2, 0.3, 0.5)  # non-contrast, arterial, portal venous: the phase is not known from a crop
SURFACE_ODDS = 0.2
SAMPLES = 2  # per voxel and axis, for partial volume at the edge
MIN_LIVER_VOXELS = 500
MEDIAN_VALUES = 50_000
CENTRE_BATCH, CENTRE_BATCHES = 16, 32  # liver voxels drawn at once to find a lesion's centre, and how many times


class SynthesizeTumoursd(RandomizableTransform, MapTransform):
    def __init__(self, keys: Sequence[Hashable] = ("image", "label"), prob: float = 0.5,
                 lesions: tuple[int, int] = (1, 3), size_mm: tuple[float, float] = (5.0, 40.0)) -> None:
        """keys: the image (1, X, Y, Z), the network's input (the HU window scaled to 0..1), and its label 0/1/2.
        prob: the chance a crop gets lesions; lesions: how many (at least, at most); size_mm: their diameters."""
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key = keys
        self.lesions, self.size_mm = lesions, size_mm

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        image, label = d[self.image_key], d[self.label_key]
        liver = np.asarray(torch.as_tensor(label)[0].cpu()) == 1
        if liver.sum() < MIN_LIVER_VOXELS:
            return d
        spacing = tuple(float(s) for s in image.pixdim[:3]) if isinstance(image, MetaTensor) else (1.0,) * 3
        rng = np.random.default_rng(self.R.randint(2**31))
        hu = window_to_hu(np.asarray(torch.as_tensor(image)[0].float().cpu()))
        painted = paint(rng, hu, liver, spacing, int(rng.integers(self.lesions[0], self.lesions[1] + 1)),
                        self.size_mm)
        out_image = torch.as_tensor(np.clip(hu_to_window(painted.hu), 0, 1)[None], dtype=torch.float32)
        new_label = np.asarray(torch.as_tensor(label).cpu()).copy()
        new_label[0][painted.tumour] = 2
        d[self.image_key] = like(image, out_image)
        d[self.label_key] = like(label, torch.as_tensor(new_label))
        return d


def like(original, tensor: torch.Tensor):
    """`tensor` with the original's dtype and device, and its metadata where it is a MetaTensor."""
    tensor = tensor.to(dtype=torch.as_tensor(original).dtype, device=torch.as_tensor(original).device)
    return MetaTensor(tensor, meta=original.meta) if isinstance(original, MetaTensor) else tensor


class Painted:
    def __init__(self, hu: np.ndarray, tumour: np.ndarray, lesions: list[dict]) -> None:
        self.hu, self.tumour, self.lesions = hu, tumour, lesions


def noise_sd(hu: np.ndarray, liver: np.ndarray) -> float:
    """The noise in the liver: the spread of each voxel around its 3 x 3 x 3 mean (which the liver's own slow
    variations hardly touch), as a standard deviation (its medians over at most MEDIAN_VALUES evenly spread)."""
    residual = hu - ndimage.uniform_filter(hu, 3)
    inner = ndimage.binary_erosion(liver, iterations=2)
    values = _spread(residual[inner if inner.sum() > 100 else liver])
    return float(1.4826 * np.median(np.abs(values - np.median(values))) * np.sqrt(27 / 26))


def _spread(values: np.ndarray) -> np.ndarray:
    """At most MEDIAN_VALUES of them, evenly spread: a median of a crop's whole liver took a tenth of the
    synthesis' time, and one of 50,000 is within a percent of it."""
    return values[:: -(-len(values) // MEDIAN_VALUES) or 1]


def median_of(values: np.ndarray) -> float:
    """The median, over at most MEDIAN_VALUES of the values evenly spread (a crop's liver)."""
    return float(np.median(_spread(values)))


def _offsets(spacing: np.ndarray, radius_mm: float, strict: bool = False) -> np.ndarray:
    """Voxel offsets within radius_mm of a voxel (nearer than it where strict), the voxel itself left out."""
    reach = np.ceil(radius_mm / spacing).astype(int)  # the length test below takes off what is too far
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in reach], indexing="ij"), -1).reshape(-1, 3)
    length = np.sqrt(((grid * spacing) ** 2).sum(1))
    within = length < radius_mm if strict else length <= radius_mm
    return grid[within & (np.abs(grid).sum(1) > 0)]


def _clear(liver: np.ndarray, points: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Whether every voxel at those offsets from each point (points x 3) is liver; beyond the array counts as
    liver, as a distance transform of the array sees it."""
    if not len(offsets):
        return np.ones(len(points), bool)
    around = points[:, None, :] + offsets[None]
    inside = np.all((around >= 0) & (around < np.asarray(liver.shape)), axis=-1)
    values = np.ones(inside.shape, bool)
    values[inside] = liver[tuple(around[inside].T)]
    return values.all(axis=1)


def _centre(rng: np.random.Generator, liver: np.ndarray, voxels: np.ndarray, spacing: np.ndarray, radius_mm: float,
            surface: bool, depth: Callable[[], np.ndarray]) -> np.ndarray:
    """A liver voxel (of `voxels`, flat indices) drawn evenly among those whose depth (the distance to the nearest
    voxel that is not liver, as the crop's distance transform measures it: nothing beyond the crop counts) is at
    least 0.7 r, or for a superficial lesion at most 0.3 r. Liver voxels are drawn a batch at a time and each
    checked against the ball of that radius around it; the distance transform of the whole crop (half of the
    synthesis' time when it was computed for every crop) only where no draw fits, and then, where no voxel fits,
    the deepest part."""
    ball = _offsets(spacing, 0.3 * radius_mm) if surface else _offsets(spacing, 0.7 * radius_mm, strict=True)
    for _ in range(CENTRE_BATCHES if len(ball) or not surface else 0):  # no voxel within 0.3 r: none fits
        batch = np.stack(np.unravel_index(voxels[rng.integers(len(voxels), size=CENTRE_BATCH)], liver.shape), -1)
        clear = _clear(liver, batch, ball)
        fits = np.flatnonzero(~clear if surface else clear)
        if len(fits):
            return batch[fits[0]]
    d = depth()
    where = np.argwhere((d > 0) & (d <= 0.3 * radius_mm) if surface else d >= 0.7 * radius_mm)
    if len(where) == 0:
        where = np.argwhere(d >= 0.7 * d.max())  # a small liver: as deep as it goes
    return where[int(rng.integers(len(where)))]


def paint(rng: np.random.Generator, hu: np.ndarray, liver: np.ndarray, spacing: Sequence[float], count: int,
          size_mm: tuple[float, float]) -> Painted:
    """`count` lesions painted into the liver of a volume of CT numbers (a copy); where they are (>= half a voxel
    covered) and what they were."""
    hu = hu.copy()
    tumour = np.zeros(hu.shape, bool)
    spacing = np.asarray(spacing, float)
    liver_hu = median_of(hu[liver])
    sd = noise_sd(hu, liver)
    depth = functools.cache(lambda: ndimage.distance_transform_edt(liver, sampling=spacing))  # mm to the capsule
    voxels = np.flatnonzero(liver)
    phase = int(rng.choice(3, p=list(PHASE_ODDS)))
    lesions = []
    for _ in range(count):
        kind, diameter = draw_kind_and_size(rng, size_mm[1], size_mm[0])
        r = diameter / 2
        surface = bool(rng.uniform() < SURFACE_ODDS)
        centre_voxel = _centre(rng, liver, voxels, spacing, r, surface, depth)
        centre = centre_voxel * spacing
        lobulated, parts = draw_shape(rng, centre, diameter)
        look = draw_look(rng, kind, diameter, phase, sd)
        reach = np.ceil(1.3 * r / spacing).astype(int) + 1
        box = tuple(slice(max(0, c - n), min(s, c + n + 1)) for c, n, s in zip(centre_voxel, reach, hu.shape))
        cover, delta = _rasterise(parts, look, diameter, box, spacing, liver_hu)
        cover = cover * liver[box]
        texture = ndimage.gaussian_filter(rng.standard_normal(cover.shape), 1.5)
        texture *= look.heterogeneity_hu / (texture.std() + 1e-6)
        hu[box] += cover * (delta + texture)
        tumour[box] |= cover >= 0.5
        lesions.append({"kind": kind, "phase": PHASES[phase], "diameter_mm": round(diameter, 1),
                        "centre_voxel": centre_voxel.tolist(), "lobulated": lobulated, "surface": surface,
                        "look": look})
    return Painted(hu, tumour, lesions)


def _rasterise(parts, look, diameter: float, box: tuple[slice, ...], spacing: np.ndarray, liver_hu: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel of the box: the fraction the lesion covers, and the mean change of CT number over that part
    (viable, rim, necrotic core)."""
    offsets = (np.arange(SAMPLES) + 0.5) / SAMPLES - 0.5
    axes = [((np.arange(b.start, b.stop)[:, None] + offsets[None]) * s).ravel() for b, s in zip(box, spacing)]
    X, Y, Z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    field = sdf(parts, X, Y, Z)
    change = np.array([look.contrast_hu, look.rim_hu, look.necrosis_hu - liver_hu], np.float32)
    inside = field < 0
    delta_fine = np.where(inside, change[part_of(field, look, diameter)], 0.0)
    shape = tuple(b.stop - b.start for b in box)
    fine = (shape[0], SAMPLES, shape[1], SAMPLES, shape[2], SAMPLES)
    cover = inside.reshape(fine).mean(axis=(1, 3, 5))
    total = delta_fine.reshape(fine).sum(axis=(1, 3, 5)) / SAMPLES**3
    delta = np.divide(total, cover, out=np.zeros_like(total), where=cover > 0)
    return cover.astype(np.float32), delta.astype(np.float32)
