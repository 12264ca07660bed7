"""Keep MONAI Label's `image_path` string out of MONAI's way while transforms run.

MONAI Label's BasicInferTask stores the input file's path as data["image_path"]. MONAI >= 1.6 `Spacingd` treats
every entry named "image_*" as the image's meta dict and calls .update() on it, which fails on a string. The
path is moved to a key outside that namespace before the pre-transforms and put back before the writer (which
reads it to choose the output's extension).
"""

from __future__ import annotations

from monai.transforms import Transform

HIDDEN = "source_path"


class StashImagePathd(Transform):
    def __call__(self, data):
        d = dict(data)
        if isinstance(d.get("image_path"), str):
            d[HIDDEN] = d.pop("image_path")
        return d


class RestoreImagePathd(Transform):
    def __call__(self, data):
        d = dict(data)
        if HIDDEN in d:
            d["image_path"] = d.pop(HIDDEN)
        return d
