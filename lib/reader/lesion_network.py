"""The lesion network (run L2): a UNet whose first level works at 1 mm, tumour or not, over the liver the shipped
model found. Its probability is taken on a 1 mm grid around the liver and sampled back onto the label's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet
from monai.transforms import Compose
from scipy import ndimage

from ..transforms.denoise import SmoothNoisyd
from ..transforms.preprocess import preprocessing

SPACING_MM = (1.0, 1.0, 1.0)
WINDOW, MARGIN_MM = (96, 96, 96), 8  # as L2 was measured (docs/model-log.md)
# the app's default smoothing when L2 was measured, fixed here: the reader's trees were fitted on the network's
# probabilities so made, whatever a request sets for the shipped model
DENOISE_ABOVE_HU, DENOISE_SIGMA_MM = 10.0, 1.0


def build_lesion_unet() -> UNet:
    return UNet(3, 1, 2, (8, 16, 32, 64, 128), (1, 2, 2, 2), num_res_units=2, norm="batch")


def load_lesion_network(path: Path, device: str = "cpu", channels_last: bool = False) -> torch.nn.Module:
    """The network from its state dict (stored in float16: it is run in bf16 or float32), its stride-1 transposed
    convolutions made plain ones, in channels-last layout if asked."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = build_lesion_unet()
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    net = transposed_as_plain(net).to(device).eval()
    return net.to(memory_format=torch.channels_last_3d) if channels_last else net


def transposed_as_plain(net: torch.nn.Module) -> torch.nn.Module:
    """Each stride-1 ConvTranspose3d replaced by the Conv3d that computes the same: its kernel flipped, its in and
    out channels swapped, padding k - 1 - p. MONAI's UNet ends in one (16 -> 2 channels at full resolution); on
    this CPU PyTorch's conv_transpose3d took 0.52 s of the network's 1.2 s on two 96^3 windows in bf16
    (docs/model-log.md)."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if (isinstance(child, torch.nn.ConvTranspose3d) and child.stride == (1, 1, 1) and child.groups == 1
                    and child.dilation == (1, 1, 1) and child.output_padding == (0, 0, 0)):
                conv = torch.nn.Conv3d(child.in_channels, child.out_channels, child.kernel_size,
                                       padding=tuple(k - 1 - p for k, p in zip(child.kernel_size, child.padding)),
                                       bias=child.bias is not None)
                with torch.no_grad():
                    conv.weight.copy_(child.weight.transpose(0, 1).flip(2, 3, 4))
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)
                setattr(module, name, conv)
    return net


def lesion_input(ct: MetaTensor) -> MetaTensor:
    """The network's input from the region's CT (X, Y, Z HU): the seed's pre-processing at 1 mm and the smoothing
    of noisy studies as L2 was measured."""
    steps = Compose([*preprocessing(SPACING_MM),
                     SmoothNoisyd("image", "report", DENOISE_ABOVE_HU, DENOISE_SIGMA_MM, SPACING_MM)])
    return steps({"image": ct})["image"]


def lesion_probability(ct: MetaTensor, region: np.ndarray, net: torch.nn.Module, dtype: torch.dtype | None,
                       image: MetaTensor | None = None) -> np.ndarray:
    """Tumour probability on `ct`'s grid (X, Y, Z HU with its affine) inside the box of `region`, 0 elsewhere;
    `image`: lesion_input(ct) where the caller has it already. MONAI's Invertd would bring the whole 1 mm volume
    back; only the region's box is needed, so it is sampled."""
    out = np.zeros(region.shape, np.float32)
    ijk = np.argwhere(region)
    if not len(ijk):
        return out
    image = lesion_input(ct) if image is None else image
    to_mm = np.linalg.inv(np.asarray(image.affine, float)) @ np.asarray(ct.affine, float)
    lo0, hi0 = ijk.min(0), ijk.max(0)
    corners = np.array([[x, y, z, 1] for x in (lo0[0], hi0[0]) for y in (lo0[1], hi0[1]) for z in (lo0[2], hi0[2])])
    c1 = (to_mm @ corners.T)[:3].T
    shape1 = np.array(image.shape[1:])
    lo1 = np.clip(np.floor(c1.min(0)).astype(int) - MARGIN_MM, 0, shape1)
    hi1 = np.clip(np.ceil(c1.max(0)).astype(int) + MARGIN_MM + 1, 0, shape1)
    device = next(net.parameters()).device
    sub = image.as_tensor()[None, :, lo1[0]:hi1[0], lo1[1]:hi1[1], lo1[2]:hi1[2]].float().to(device)
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = sliding_window_inference(sub, WINDOW, 2, net, overlap=0.25, mode="gaussian")
    prob = logits.float().softmax(1)[0, 1].cpu().numpy()
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo0, hi0)], indexing="ij"), -1).reshape(-1, 3)
    points = (to_mm @ np.c_[grid, np.ones(len(grid))].T)[:3] - lo1[:, None]
    out[tuple(grid.T)] = ndimage.map_coordinates(prob, points, order=1, cval=0.0)
    return out
