"""The second reader after the clean-up: the lesion network's tumours beside the shipped model's, and of both only
the candidates the reader keeps (docs/model-log.md, run R1). On the region's grid, before the lesion report."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform
from nibabel.affines import voxel_sizes

from .candidates import candidates, measurements
from .lesion_network import lesion_probability
from .trees import Trees


class SecondReaderd(MapTransform):
    """(X, Y, Z) label of the region and its CT (`ct_key`, popped) -> the label with the liver as it was and, as
    tumour, the candidates the reader gives `threshold` or more; what it read goes into the result JSON.
    `input_key`: where the data holds the lesion network's input already (the shipped model's, when it was made
    the same way: lesion_input), so that it is not made twice."""

    def __init__(self, key: str, ct_key: str, json_key: str, models: Callable[[], tuple[torch.nn.Module, Trees]],
                 threshold: float, dtype: torch.dtype | None, input_key: str | None = None) -> None:
        super().__init__(keys=[key])
        self.key, self.ct_key, self.json_key, self.input_key = key, ct_key, json_key, input_key
        self.models, self.threshold, self.dtype = models, threshold, dtype

    def __call__(self, data):
        d = dict(data)
        start = time.perf_counter()
        ct, label = d.pop(self.ct_key), d[self.key]
        array = torch.as_tensor(label).cpu().numpy().astype(np.uint8)
        if tuple(ct.shape) != array.shape:
            raise RuntimeError(f"the region's CT {tuple(ct.shape)} and label {array.shape} differ")
        net, trees = self.models()
        spacing = voxel_sizes(np.asarray(ct.affine, float))
        prob = lesion_probability(ct, array > 0, net, self.dtype, d.get(self.input_key) if self.input_key else None)
        parts = candidates(array, prob, spacing)
        x = measurements(ct.as_tensor().numpy().astype(np.float32), array, prob, parts, spacing)
        score = trees.probability(x)
        kept = np.flatnonzero(score >= self.threshold) + 1
        out = (array > 0).astype(np.uint8)
        out[np.isin(parts, kept)] = 2
        result = torch.from_numpy(out)
        d[self.key] = MetaTensor(result, meta=label.meta) if isinstance(label, MetaTensor) else result
        d[self.json_key] = {**d.get(self.json_key, {}), "second_reader": {
            "candidates": len(score), "kept": len(kept), "threshold": self.threshold,
            "scores": [round(float(s), 3) for s in score], "seconds": round(time.perf_counter() - start, 2)}}
        return d
