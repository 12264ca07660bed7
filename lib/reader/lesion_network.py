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
WINDOW, MARGIN_MM = (96, 96, 96), 8  # as L2 was measured (docs/model.md)
# the app's default smoothing when L2 was measured, fixed here: the reader's trees were fitted on the network's
# probabilities so made, whatever a request sets for the shipped model
DENOISE_ABOVE_HU, DENOISE_SIGMA_MM = 10.0, 1.0


def build_lesion_unet() -> UNet:
    return UNet(3, 1, 2, (8, 16, 32, 64, 128), (1, 2, 2, 2), num_res_units=2, norm="batch")


def load_lesion_network(path: Path, device: str = "cpu") -> UNet:
    """The network from its state dict (stored in float16: it is run in bf16 or float32)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = build_lesion_unet()
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.to(device).eval()


def lesion_probability(ct: MetaTensor, region: np.ndarray, net: UNet, dtype: torch.dtype | None) -> np.ndarray:
    """Tumour probability on `ct`'s grid (X, Y, Z HU with its affine) inside the box of `region`, 0 elsewhere.
    MONAI's Invertd would bring the whole 1 mm volume back; only the region's box is needed, so it is sampled."""
    out = np.zeros(region.shape, np.float32)
    ijk = np.argwhere(region)
    if not len(ijk):
        return out
    d = Compose([*preprocessing(SPACING_MM),
                 SmoothNoisyd("image", "report", DENOISE_ABOVE_HU, DENOISE_SIGMA_MM, SPACING_MM)])({"image": ct})
    image = d["image"]
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
