"""Instance-wise tumour terms beside the voxel loss: blob loss (Kofler et al. 2022, arXiv 2205.08209) and a
per-lesion cross-entropy.

Dice and cross-entropy count voxels, so a 15 mm lesion weighs a twelfth of a 35 mm one and a crop's big lesion
drowns its small ones; missing a small lesion costs almost nothing. Here each connected lesion of the label counts
once, whatever its size, in two terms, each averaged over the batch's lesions:
- its soft Dice, over the lesion and every voxel that is no lesion (the other lesions masked out, so each sees the
  false tumour around it but not its neighbours): outlines and false tumour;
- the mean cross-entropy of its own voxels (-log of their tumour probability): recall. Through the softmax the
  soft Dice's gradient on a lesion the network misses with certainty vanishes (it scales with p(1 - p)), so a
  missed lesion stays missed; the log's gradient stays near 1 whatever the probability.
MONAI has no instance-wise loss; this wraps its voxel loss.
"""

from __future__ import annotations

import torch
from scipy import ndimage

from ..metrics.lesions import CONNECTED, TUMOUR


class BlobLoss(torch.nn.Module):
    """`base + weight * mean(1 - lesion soft Dice) + ce_weight * mean(lesion cross-entropy)`, over the lesions.

    pred: logits (B, C, ...); target: class indices (B, 1, ...). A batch without lesions adds nothing.
    """

    def __init__(self, base: torch.nn.Module, weight: float, ce_weight: float = 0.0, smooth: float = 1e-5) -> None:
        super().__init__()
        self.base, self.weight, self.ce_weight, self.smooth = base, weight, ce_weight, smooth

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.base(pred, target)
        terms = self.lesion_losses(pred, target)
        if terms is None:
            return loss
        dice, ce = terms
        return loss + self.weight * dice + self.ce_weight * ce

    def lesion_losses(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Over the connected lesions of the batch: (mean of 1 - soft Dice, mean of each lesion's voxels' mean -log
        tumour probability); None where the batch has none."""
        log_p = torch.log_softmax(pred.float(), dim=1)[:, TUMOUR]
        tumour_p = log_p.exp()
        lesion = torch.as_tensor(target)[:, 0] == TUMOUR
        on_host = lesion.cpu().numpy()  # one copy off the GPU for the batch; scipy labels the components
        dice_losses, ce_losses = [], []
        for b in range(pred.shape[0]):
            parts, n = ndimage.label(on_host[b], structure=CONNECTED)
            if n == 0:
                continue
            ids = torch.from_numpy(parts).to(pred.device).flatten()
            p = tumour_p[b].flatten()
            overlap = torch.zeros(n + 1, device=p.device, dtype=p.dtype).index_add_(0, ids, p)[1:]
            log_sum = torch.zeros(n + 1, device=p.device, dtype=p.dtype).index_add_(0, ids, log_p[b].flatten())[1:]
            size = torch.bincount(ids, minlength=n + 1)[1:].to(p.dtype)
            false_tumour = (p * ~lesion[b].flatten()).sum()
            # a lesion's masked region is itself and the non-lesion voxels: its prediction sums overlap + false tumour
            dice_losses.append(1 - (2 * overlap + self.smooth) / (overlap + false_tumour + size + self.smooth))
            ce_losses.append(-log_sum / size)
        if not dice_losses:
            return None
        return torch.cat(dice_losses).mean(), torch.cat(ce_losses).mean()
