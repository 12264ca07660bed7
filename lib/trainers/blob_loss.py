"""An instance-wise tumour term beside the voxel loss: blob loss (Kofler et al. 2022, arXiv 2205.08209).

Dice and cross-entropy count voxels, so a 15 mm lesion weighs a twelfth of a 35 mm one and a crop's big lesion
drowns its small ones; missing a small lesion costs almost nothing. Here each connected lesion of the label gets
its own soft Dice, computed over the lesion and every voxel that is no lesion (the other lesions masked out, so
each sees the false tumour around it but not its neighbours), and the loss adds the mean over the batch's lesions,
each lesion counting once whatever its size. MONAI has no instance-wise loss; this wraps its voxel loss.
"""

from __future__ import annotations

import torch
from scipy import ndimage

from ..metrics.lesions import CONNECTED, TUMOUR


class BlobLoss(torch.nn.Module):
    """`base(pred, target) + weight * mean over lesions of (1 - the lesion's soft Dice)`.

    pred: logits (B, C, ...); target: class indices (B, 1, ...). A batch without lesions adds nothing.
    """

    def __init__(self, base: torch.nn.Module, weight: float, smooth: float = 1e-5) -> None:
        super().__init__()
        self.base, self.weight, self.smooth = base, weight, smooth

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.base(pred, target)
        blob = self.lesion_dice_loss(pred, target)
        return loss if blob is None else loss + self.weight * blob

    def lesion_dice_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """Mean of 1 - soft Dice per connected lesion of the batch; None where the batch has none."""
        tumour_p = torch.softmax(pred.float(), dim=1)[:, TUMOUR]
        lesion = torch.as_tensor(target)[:, 0] == TUMOUR
        on_host = lesion.cpu().numpy()  # one copy off the GPU for the batch; scipy labels the components
        losses = []
        for b in range(pred.shape[0]):
            parts, n = ndimage.label(on_host[b], structure=CONNECTED)
            if n == 0:
                continue
            ids = torch.from_numpy(parts).to(pred.device).flatten()
            p = tumour_p[b].flatten()
            overlap = torch.zeros(n + 1, device=p.device, dtype=p.dtype).index_add_(0, ids, p)[1:]
            size = torch.bincount(ids, minlength=n + 1)[1:].to(p.dtype)
            false_tumour = (p * ~lesion[b].flatten()).sum()
            # a lesion's masked region is itself and the non-lesion voxels: its prediction sums overlap + false tumour
            dice = (2 * overlap + self.smooth) / (overlap + false_tumour + size + self.smooth)
            losses.append(1 - dice)
        return torch.cat(losses).mean() if losses else None
