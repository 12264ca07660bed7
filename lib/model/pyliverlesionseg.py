"""pyliverlesionseg's two networks (PyPI `pyliverlesionseg` 0.3, Apache-2.0; Tang et al., EJNMMI 2020): a liver
network at 3 mm and a lesion network at 1 x 1 x 3 mm, as its `cnn_liver_lesion_seg_CT_MR_functions.py` builds
them, with their weights converted from the wheel's Keras HDF5 files into one PyTorch file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.atomic import save_json, write_atomic
from .generalized_unet import GeneralizedUNet, UNetLayout, load_hdf5_weights

_K31, _K33 = (3, 3, 1), (3, 3, 3)
_FEATURES = (((20, 40), (40, 20)), ((40, 80), (80, 40)), ((80, 160), (160, 80)), ((160, 160), ()))


@dataclass(frozen=True)
class Stage:
    name: str
    layout: UNetLayout
    voxel_mm: tuple[float, float, float]  # the grid it runs on (the HDF5 header's voxel_size)
    output: tuple[int, int, int]  # the output of one window, as the package asks for it
    centred: bool  # one window at the image's centre (True) or windows tiling it
    hdf5: str  # the member of the wheel that holds its weights


LIVER = Stage(
    "liver",
    UNetLayout(factors=((1, 1, 1), (3, 3, 3), (9, 9, 9), (27, 27, 27)),
               kernels=(((_K31, _K33), (_K33, _K31)),) * 3 + (((_K33, _K33), ()),),
               features=_FEATURES, padding="same", upsampling="linear", residual=False),
    (3.0, 3.0, 3.0), (163, 136, 136), True,
    "pyliverlesionseg/trained_models/"
    "model_unet_ct_mr_liv_seg_resize_1.5mm_med_3_resize_3mm_20201011_dice_loss_val_binary_dice_mean.hdf5")
LESION = Stage(
    "lesion",
    UNetLayout(factors=((1, 1, 1), (2, 2, 2), (4, 4, 4), (8, 8, 8)),
               kernels=(((_K31, _K33), (_K33, _K31)),) * 3 + (((_K31, _K33), ()),),
               features=_FEATURES, padding="valid", upsampling="copy", residual=True),
    (1.0, 1.0, 3.0), (92, 84, 42), False,
    "pyliverlesionseg/trained_models/"
    "model_unet_ct_mr_lesion_seg_resize_1mm_1mm_3mm_20220207_dice_loss_val_binary_dice_mean.hdf5")
STAGES = (LIVER, LESION)


def convert(hdf5: dict[str, Path], out: Path, card: dict) -> Path:
    """Both networks' weights from their HDF5 files into one PyTorch file, written atomically with its card."""
    state = {}
    for stage in STAGES:
        network = GeneralizedUNet(stage.layout)
        load_hdf5_weights(network, hdf5[stage.name])
        state[stage.name] = network.state_dict()
    save_json(card, out.with_suffix(".json"))
    return write_atomic(out, lambda p: torch.save(state, p))


def load_networks(path: Path, device: str | torch.device = "cpu") -> dict[str, GeneralizedUNet]:
    """{"liver": ..., "lesion": ...} in evaluation mode, from a file `convert` wrote."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    networks = {}
    for stage in STAGES:
        network = GeneralizedUNet(stage.layout)
        network.load_state_dict(state[stage.name])
        networks[stage.name] = network.to(device).eval()
    return networks
