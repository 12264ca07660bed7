"""`/batch/infer`: MONAI Label's batch inference, saving each label with the `original` tag."""

from __future__ import annotations

import torch
from monailabel.interfaces.tasks.batch_infer import BatchInferTask


class BatchInfer(BatchInferTask):
    """MONAI Label spreads images over GPUs when multi_gpu is true (its default) and, with no GPU, divides by
    zero: without CUDA the request runs on the CPU instead, with no change asked of the client."""

    def __call__(self, request, datastore, infer):
        if not torch.cuda.is_available():
            request = {**request, "multi_gpu": False, "device": "cpu"}
        return super().__call__(request, datastore, infer)
