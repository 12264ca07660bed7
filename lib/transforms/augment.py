"""nnU-Net's default data augmentation, as MONAI's transforms, for the training crops (train option
`augment_prob`).

The phantoms vary only as far as the generator draws them (an in-plane blur of 0.35 to 0.6 mm, one CT number per
tissue and study within textbook ranges, livers of about 1.2 to 2.3 L); real scans vary more (reconstruction
kernels, scanners, contrast timing, body size), and nnU-Net's default pipeline gives every network it trains
more of that variety (Isensee et al., Nature Methods 2021: rotation and scaling, Gaussian blur, brightness,
contrast, simulated low resolution, gamma). The recipe had flips, right-angle rotations and an intensity shift
only. These are nnU-Net's but its contrast (gamma and brightness stand for it here) and its noise (options
noise_prob, noise_hu), each with the same chance `prob`; the ranges are nnU-Net's, rotation and scaling narrower
(a patient lies on the table with its axes close to the scanner's, and the crop is padded by its own border when
it shrinks).
"""

from __future__ import annotations

import math

from monai.transforms import (
    RandAdjustContrastd,
    RandAffined,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandSimulateLowResolutiond,
)

ROTATE_RAD = math.radians(15.0)
SCALE = 0.2  # 0.8 to 1.2 times
BLUR_SIGMA_VOXELS = (0.5, 1.0)
BRIGHTNESS = 0.25  # times 0.75 to 1.25
GAMMA = (0.7, 1.5)
LOW_RESOLUTION = (0.5, 1.0)


def augmentations(prob: float, keys: tuple[str, str] = ("image", "label")) -> list:
    """Spatial then appearance transforms of the image (and the label where the geometry changes), each with
    chance `prob`; none when prob is 0."""
    if prob <= 0:
        return []
    image = keys[0]
    return [
        RandAffined(keys=keys, prob=prob, rotate_range=(ROTATE_RAD,) * 3, scale_range=(SCALE,) * 3,
                    mode=("bilinear", "nearest"), padding_mode="border"),
        RandGaussianSmoothd(keys=image, prob=prob, sigma_x=BLUR_SIGMA_VOXELS, sigma_y=BLUR_SIGMA_VOXELS,
                            sigma_z=BLUR_SIGMA_VOXELS),
        RandScaleIntensityd(keys=image, prob=prob, factors=BRIGHTNESS),
        RandSimulateLowResolutiond(keys=image, prob=prob, zoom_range=LOW_RESOLUTION),
        RandAdjustContrastd(keys=image, prob=prob, gamma=GAMMA),
    ]
