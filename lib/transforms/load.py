"""Load a CT study with MONAI's reader and refuse what is not a usable 3D CT volume, naming the problem."""

from __future__ import annotations

import numpy as np
from monai.transforms import LoadImaged, MapTransform

from ..errors import InvalidInput
from ..validation import check_ct


class LoadCTd(MapTransform):
    """LoadImaged, whose failures on broken files become InvalidInput (422), followed by the CT checks."""

    def __init__(self, key: str = "image") -> None:
        super().__init__(keys=[key])
        self.key = key
        self.loader = LoadImaged(keys=key, image_only=False)

    def __call__(self, data):
        path = data.get(self.key)
        if isinstance(path, str):
            try:
                data = self.loader(data)
            except Exception as e:  # readers raise many kinds for corrupt or truncated files
                raise InvalidInput(f"the image could not be read ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else 'corrupt file'})") from e
        check_ct(np.asarray(data[self.key]))
        return data
