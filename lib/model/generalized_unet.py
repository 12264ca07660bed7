"""DeepVoxNet's generalized U-Net in PyTorch, so that the Keras weights of pyliverlesionseg (Apache-2.0, KU Leuven;
its `architectures/unet_generalized.py`) run here without TensorFlow 1.

The network is built from the same description as the original (subsample factor, kernel sizes and feature counts
per pathway; padding; upsampling; residual connections) and computes the same arithmetic, layer for layer:
max pooling by each pathway's factor; before every convolution but the first, instance normalisation
((x - mean) / (std + 1e-7) over the voxels of each channel of each sample, Keras' epsilon) and a leaky ReLU
(slope 0.01); upsampling by copying, or by copying then averaging over the factor ("linear"); the skip path cropped
symmetrically to the upward path; a 1x1x1 convolution with a sigmoid at the end. Its convolutions are created in
the order Keras created and named them (conv3d_1, conv3d_2, ...), which is how the HDF5 weights are matched.
MONAI's UNets have no such layout (valid padding, anisotropic kernels, per-sample normalisation without affine
parameters), so it is written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

Triple = tuple[int, int, int]
EPSILON = 1e-7  # keras.backend.epsilon()
LEAK = 0.01


@dataclass(frozen=True)
class UNetLayout:
    """The arguments of the original `create_unet_like_model` that the two networks set."""

    factors: tuple[Triple, ...]  # subsample factor of each pathway, top to bottom
    kernels: tuple[tuple[tuple[Triple, ...], tuple[Triple, ...]], ...]  # per pathway: (down kernels, up kernels)
    features: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # per pathway: (down features, up features)
    padding: str  # "same" or "valid"
    upsampling: str  # "copy" or "linear"
    residual: bool


def _parity(position: np.ndarray, factor: Sequence[int], width: Sequence[int]) -> np.ndarray:
    """Whether a pathway's centre falls on a voxel (0) or between two (1), after a window of `width` + 1 voxels
    of the pathway's grid: an odd extent in input voxels moves it by half a voxel."""
    extent = np.asarray(factor) * np.asarray(width)
    return np.abs(position - (1 - (extent + 1) % 2))


def alignment_pools(layout: UNetLayout) -> list[Triple]:
    """Per level of the upward path (0 = the input level), the size of the stride-1 average pool that the original
    puts first, to bring the upward path's centre onto the downward path's (1 where they already agree)."""
    factors = [(1, 1, 1), *layout.factors]
    kernels = [((), ()), *layout.kernels]
    left, position, previous = [], np.zeros(3, int), np.ones(3, int)
    for factor, (down, _) in zip(factors, kernels):
        step = np.asarray(factor) // previous
        previous = np.asarray(factor)
        position = _parity(position, factor, step - 1)
        for k in down:
            position = _parity(position, factor, np.asarray(k) - 1)
        left.append(position)
    up_factors = [(1, 1, 1), (1, 1, 1), *layout.factors[:-1]]
    right: list[np.ndarray] = [np.zeros(3, int)] * len(factors)
    for i in reversed(range(len(factors))):
        right[i] = position
        position = left[i]
        for k in kernels[i][1]:
            position = _parity(position, up_factors[i], np.asarray(k) - 1)
    return [tuple(int(v) for v in np.abs(a - b) + 1) for a, b in zip(left, right)]  # type: ignore[misc]


def normalise_and_activate(x: torch.Tensor) -> torch.Tensor:
    """Keras' Lambda normalisation ((x - mean) / (std + epsilon), population std, over each channel's voxels),
    then the leaky ReLU, in two passes over the data: the statistics (accumulated in float32 whatever the input's
    type, rounded to it), one multiply-add, one in-place activation."""
    var, mean = torch.var_mean(x, dim=(2, 3, 4), keepdim=True, correction=0)
    scale = 1.0 / (var.double().sqrt() + EPSILON)
    return F.leaky_relu_(torch.addcmul((-mean * scale).to(x.dtype), x, scale.to(x.dtype)), LEAK)


def crop_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Keras' Cropping3D(int((l - r) / 2)): the same number of voxels off both ends of each axis."""
    cut = [int((a - b) / 2) for a, b in zip(x.shape[2:], ref.shape[2:])]
    return x[:, :, cut[0]: x.shape[2] - cut[0], cut[1]: x.shape[3] - cut[1], cut[2]: x.shape[4] - cut[2]]


class _Block(nn.Module):
    """The convolutions of one pathway in one direction, with the residual shortcut when there is one."""

    def __init__(self, channels_in: int, kernels: Sequence[Triple], features: Sequence[int], padding: str,
                 residual: bool, normalise_first: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        channels = channels_in
        for k, f in zip(kernels, features):
            pad = tuple((s - 1) // 2 for s in k) if padding == "same" else 0
            self.convs.append(nn.Conv3d(channels, f, k, padding=pad))
            channels = f
        self.shortcut = nn.Conv3d(channels_in, channels, 1) if residual and kernels and channels != channels_in \
            else None
        self.residual, self.normalise_first, self.channels_out = residual and bool(kernels), normalise_first, channels

    def created(self) -> list[nn.Conv3d]:
        """The convolutions in the order the original created them: the block's, then its shortcut's."""
        return [*self.convs, *([self.shortcut] if self.shortcut is not None else [])]

    def forward(self, path: torch.Tensor) -> torch.Tensor:
        shortcut = path
        for j, conv in enumerate(self.convs):
            if self.normalise_first or j > 0:
                path = normalise_and_activate(path)
            path = conv(path)
        if self.residual:
            shortcut = crop_like(shortcut, path)
            path = path + (self.shortcut(shortcut) if self.shortcut is not None else shortcut)
        return path


class GeneralizedUNet(nn.Module):
    def __init__(self, layout: UNetLayout, channels_in: int = 1) -> None:
        super().__init__()
        self.layout = layout
        self.pools = alignment_pools(layout)
        n = len(layout.factors)
        self.down = nn.ModuleList()
        channels = channels_in
        for p in range(n):
            block = _Block(channels, layout.kernels[p][0], layout.features[p][0], layout.padding, layout.residual,
                           normalise_first=p > 0)
            self.down.append(block)
            channels = block.channels_out
        self.up = nn.ModuleList()  # index p: the upward convolutions of pathway p (none for the deepest)
        below = self.down[-1].channels_out
        blocks: list[_Block | None] = [None] * n
        for p in reversed(range(n - 1)):
            block = _Block(self.down[p].channels_out + below, layout.kernels[p][1], layout.features[p][1],
                           layout.padding, layout.residual, normalise_first=True)
            blocks[p] = block
            below = block.channels_out
        self.up = nn.ModuleList([b if b is not None else nn.Identity() for b in blocks])
        self.final = nn.Conv3d(below, 1, 1)

    @property
    def channels_last(self) -> bool:
        """Whether the weights are in channels-last 3D layout (then the windows are given in it too)."""
        return self.down[0].convs[-1].weight.is_contiguous(memory_format=torch.channels_last_3d)

    def keras_order(self) -> list[nn.Conv3d]:
        """Every convolution in the order the original created (and named) them: conv3d_1, conv3d_2, ..."""
        convs = [c for block in self.down for c in block.created()]
        for p in reversed(range(len(self.layout.factors) - 1)):
            convs += self.up[p].created()
        return [*convs, self.final]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, X, Y, Z) -> (N, 1, X', Y', Z') probabilities; X' < X with valid padding or linear upsampling."""
        factors = self.layout.factors
        lefts, previous, path = [], (1, 1, 1), x
        for p, factor in enumerate(factors):
            step = tuple(f // q for f, q in zip(factor, previous))
            previous = factor
            if step != (1, 1, 1):
                path = F.max_pool3d(path, step, step)
            path = self.down[p](path)
            lefts.append(path)
        up_factors = [(1, 1, 1), *factors[:-1]]  # the factor of the level each upward step lands on
        previous = factors[-1]
        for p in reversed(range(len(factors))):
            if self.pools[p + 1] != (1, 1, 1):
                path = F.avg_pool3d(path, self.pools[p + 1], 1)
            if p < len(factors) - 1:
                path = self.up[p](torch.cat([crop_like(lefts[p], path), path], dim=1))
            step = tuple(q // f for q, f in zip(previous, up_factors[p]))
            previous = up_factors[p]
            path = self._upsample(path, step)
        if self.pools[0] != (1, 1, 1):
            path = F.avg_pool3d(path, self.pools[0], 1)
        path = self._upsample(path, (1, 1, 1))
        return torch.sigmoid(self.final(normalise_and_activate(path)))

    def _upsample(self, path: torch.Tensor, step: Triple) -> torch.Tensor:
        if step == (1, 1, 1):
            return path
        if self.layout.upsampling == "linear":
            # copying each voxel `step` times then averaging `step` neighbours (stride 1) is linear interpolation
            # between voxel centres with the ends aligned: (n - 1) x step + 1 voxels
            size = [(n - 1) * s + 1 for n, s in zip(path.shape[2:], step)]
            return F.interpolate(path, size=size, mode="trilinear", align_corners=True)
        return path.repeat_interleave(step[0], 2).repeat_interleave(step[1], 3).repeat_interleave(step[2], 4)

    # ---- sizes, axis by axis (every layer acts on the axes independently)
    def output_size(self, size: Sequence[int]) -> Triple | None:
        """The output size for an input of `size` voxels, or None where the layout cannot take it (as the original
        decides: every pooling divides its input, every skip path and shortcut is cropped evenly at both ends)."""
        out = [self._axis_output(int(n), axis) for axis, n in enumerate(size)]
        return None if None in out else tuple(out)  # type: ignore[return-value]

    def input_size_for(self, output: Sequence[int], largest: int = 1024) -> Triple:
        """The smallest input whose output has this size, per axis: the size the original gives its input."""
        found = []
        for axis, target in enumerate(output):
            n = next((n for n in range(1, largest) if self._axis_output(n, axis) == int(target)), None)
            if n is None:
                raise ValueError(f"no input size gives an output of {target} voxels along axis {axis}")
            found.append(n)
        return tuple(found)  # type: ignore[return-value]

    def _axis_output(self, n: int, axis: int) -> int | None:
        layout, factors = self.layout, self.layout.factors

        def through(block: _Block, n: int) -> int | None:
            shrink = sum(k[axis] - 1 for k in (c.kernel_size for c in block.convs)) if layout.padding == "valid" else 0
            return n - shrink if not (block.residual and shrink % 2) else None

        lefts, previous = [], 1
        for p, factor in enumerate(factors):
            step = factor[axis] // previous
            previous = factor[axis]
            if n % step:
                return None
            n = through(self.down[p], n // step)
            if n is None or n < 1:
                return None
            lefts.append(n)
        up_factors = [(1, 1, 1), *factors[:-1]]
        previous = factors[-1][axis]
        for p in reversed(range(len(factors))):
            n -= self.pools[p + 1][axis] - 1
            if p < len(factors) - 1:
                if lefts[p] < n or (lefts[p] - n) % 2:
                    return None
                n = through(self.up[p], n)
                if n is None or n < 1:
                    return None
            step = previous // up_factors[p][axis]
            previous = up_factors[p][axis]
            n = n * step - (step - 1 if layout.upsampling == "linear" else 0)
        n -= self.pools[0][axis] - 1
        return n if n > 0 else None


def load_hdf5_weights(network: GeneralizedUNet, path: Path) -> None:
    """The weights of a Keras 2 HDF5 file (save_weights or save) into the network, by the convolutions' names:
    conv3d_k is the k-th convolution the original created. Kernels are (x, y, z, in, out) there, (out, in, x, y, z)
    here; both frameworks compute cross-correlations."""
    import h5py

    convs = network.keras_order()
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        names = sorted((n for n in group if n.startswith("conv3d_")), key=lambda n: int(n.split("_")[1]))
        if len(names) != len(convs):
            raise ValueError(f"{path}: {len(names)} convolutions in the file, {len(convs)} in the network")
        for name, conv in zip(names, convs):
            kernel = np.asarray(group[name][name]["kernel:0"])
            bias = np.asarray(group[name][name]["bias:0"])
            expected = tuple(conv.weight.shape[2:]) + (conv.in_channels, conv.out_channels)
            if kernel.shape != expected:
                raise ValueError(f"{path}: {name} has kernel {kernel.shape}, the network expects {expected}")
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy()))
                conv.bias.copy_(torch.from_numpy(bias))


def extract(image: np.ndarray, centre: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The original's ExtractSegment3D2: a `size` window whose voxel size // 2 is image voxel `centre`, 0 outside
    the image."""
    out = np.zeros(tuple(size), np.float32)
    src, dst = [], []
    for n, c, s in zip(image.shape, centre, size):
        start = c - s // 2
        lo, hi = max(0, start), min(n, start + s)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = image[tuple(src)]
    return out


def predict(network: nn.Module, image: np.ndarray, output: Sequence[int], centred: bool,
            device: str | torch.device = "cpu", dtype: torch.dtype | None = None, spread: bool = False) -> np.ndarray:
    """The network over an image as DeepVoxNet's `predict` runs it: one window at the image's centre (`centred`) or
    windows tiling the image (their outputs `output` voxels each, or the image's size where it is smaller; the
    last one along an axis flush with the end), each output written where its window is centred, later ones over
    earlier ones; voxels no output reached take the value of the nearest one that did. `spread`: as few windows,
    spread evenly over the image (the app's choice: fewer windows where the last would mostly repeat another).
    The windows are zero outside the image. `network` gives `input_size_for(output)` and `channels_last`."""
    size = network.input_size_for(output)
    shape = image.shape
    step = list(shape) if centred else [min(n, o) for n, o in zip(shape, output)]
    if spread:  # the fewest windows, spread evenly (overlapping equally) instead of flush with the start
        starts = [[round(k * (n - s) / max(1, math.ceil(n / s) - 1)) for k in range(math.ceil(n / s))]
                  for n, s in zip(shape, step)]
    else:
        starts = [list(range(0, n, s)) + ([n - s] if n % s else []) for n, s in zip(shape, step)]
    result = np.full(shape, np.nan, np.float32)
    kind = torch.device(device).type
    memory = torch.channels_last_3d if network.channels_last else torch.contiguous_format
    for x in starts[0]:
        for y in starts[1]:
            for z in starts[2]:
                centre = [math.ceil(a + (s - 1) / 2) for a, s in zip((x, y, z), step)]
                window = torch.from_numpy(extract(image, centre, size))[None, None].to(device, memory_format=memory)
                with torch.no_grad(), torch.autocast(kind, dtype=dtype, enabled=dtype is not None):
                    out = network(window).float()[0, 0].cpu().numpy()
                src, dst = [], []
                for n, c, s, o in zip(shape, centre, size, out.shape):
                    middle = c if s % 2 else c - 0.5  # an even window's centre lies between two voxels
                    first = round(middle - (o - 1) / 2 - 1e-7)  # the output's first voxel in the image
                    lo, hi = max(0, first), min(n, first + o)
                    dst.append(slice(lo, hi))
                    src.append(slice(lo - first, hi - first))
                result[tuple(dst)] = out[tuple(src)]
    missing = np.isnan(result)
    if missing.all():
        raise ValueError("no output of the network reached the image")
    if missing.any():
        nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
        result = result[tuple(nearest)]
    return result
