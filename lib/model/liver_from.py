"""Two networks of the seed's kind as one: the tumour from one, the liver (liver and tumour together) from another.

A model tuned for lesions can lose liver on real CT that an earlier one kept (docs/model-log.md): this runs both on each
window and gives, as log-probabilities that the rest of inference treats as logits,

    p(tumour) = t,   p(liver) = (1 - t) w,   p(background) = (1 - t) (1 - w)

where t is the first network's tumour probability and w the second's liver-or-tumour probability. MONAI's
ensembles (`EnsembleEvaluator`, `MeanEnsembled`, `VoteEnsembled`) average or vote over whole outputs; none takes
one class from one network and another from a second, so this is written here.
"""

from __future__ import annotations

import torch

EPS = 1e-6


class LiverFrom(torch.nn.Module):
    def __init__(self, tumour_network: torch.nn.Module, liver_network: torch.nn.Module) -> None:
        super().__init__()
        self.tumour_network, self.liver_network = tumour_network, liver_network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.softmax(self.tumour_network(x).float(), 1)[:, 2:3]
        w = 1.0 - torch.softmax(self.liver_network(x).float(), 1)[:, 0:1]
        probs = torch.cat([(1 - t) * (1 - w), (1 - t) * w, t], 1)
        return torch.log(probs.clamp_min(EPS))
