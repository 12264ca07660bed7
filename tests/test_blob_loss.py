"""Blob loss (lib.trainers.blob_loss): each lesion of the crop counts once, whatever its size."""

import torch
from monai.losses import DiceCELoss

from lib.trainers.blob_loss import BlobLoss


def _logits(label: torch.Tensor, sure: float = 20.0) -> torch.Tensor:
    """Logits (1, 3, ...) that predict `label` (1, 1, ...) with certainty."""
    return torch.nn.functional.one_hot(label[:, 0].long(), 3).permute(0, 4, 1, 2, 3).float() * sure


def _dice(blob: BlobLoss, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return blob.lesion_losses(logits, label)[0]


def _ce(blob: BlobLoss, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return blob.lesion_losses(logits, label)[1]


def _two_lesions() -> torch.Tensor:
    label = torch.ones(1, 1, 24, 24, 24)  # all liver
    label[:, :, 2:14, 2:14, 2:14] = 2  # a big lesion, 1728 voxels
    label[:, :, 18:20, 18:20, 18:20] = 2  # a small one, 8 voxels
    return label


def test_a_missed_small_lesion_costs_as_much_as_a_missed_big_one():
    label = _two_lesions()
    blob = BlobLoss(DiceCELoss(to_onehot_y=True, softmax=True, batch=True), weight=1.0)
    small_missed, big_missed = label.clone(), label.clone()
    small_missed[:, :, 18:20, 18:20, 18:20] = 1
    big_missed[:, :, 2:14, 2:14, 2:14] = 1
    assert _dice(blob, _logits(label), label).item() < 1e-4
    # one lesion of two missed: half the blob term, big or small
    for pred in (small_missed, big_missed):
        assert abs(_dice(blob, _logits(pred), label).item() - 0.5) < 1e-3
    # the voxel loss barely notices the small lesion: the blob term is what makes it count
    voxel = blob.base
    assert voxel(_logits(small_missed), label).item() < 0.1 * voxel(_logits(big_missed), label).item()
    total = blob(_logits(small_missed), label).item()
    assert abs(total - voxel(_logits(small_missed), label).item() - 0.5) < 1e-3


def test_false_tumour_lowers_each_lesions_dice_but_a_neighbour_does_not():
    label = _two_lesions()
    blob = BlobLoss(DiceCELoss(to_onehot_y=True, softmax=True), weight=1.0)
    pred = label.clone()
    pred[:, :, 18:20, 18:20, 21:23] = 2  # 8 voxels of false tumour beside the small lesion
    small_dice = 2 * 8 / (8 + 8 + 8)  # its Dice sees the false tumour
    big_dice = 2 * 1728 / (1728 + 8 + 1728)  # the big one sees it too, but it is small beside it
    expected = ((1 - small_dice) + (1 - big_dice)) / 2
    assert abs(_dice(blob, _logits(pred), label).item() - expected) < 1e-3
    # the other lesion, predicted as tumour, is masked out of each lesion's Dice: a perfect prediction scores 0
    assert _dice(blob, _logits(label), label).item() < 1e-4


def test_a_batch_without_lesions_adds_nothing_and_gradients_flow():
    healthy = torch.ones(2, 1, 8, 8, 8)
    blob = BlobLoss(DiceCELoss(to_onehot_y=True, softmax=True, batch=True), weight=2.0)
    logits = torch.randn(2, 3, 8, 8, 8)
    assert blob.lesion_losses(logits, healthy) is None
    assert torch.isclose(blob(logits, healthy), blob.base(logits, healthy))
    label = _two_lesions()
    logits = torch.zeros(1, 3, 24, 24, 24, requires_grad=True)
    blob(logits, label).backward()
    # the gradient pushes the tumour logit up inside the small lesion
    assert logits.grad[0, 2, 18:20, 18:20, 18:20].max() < 0


def test_the_lesion_cross_entropy_counts_each_lesion_once_and_keeps_pushing_on_a_missed_one():
    label = _two_lesions()
    blob = BlobLoss(DiceCELoss(to_onehot_y=True, softmax=True, batch=True), weight=1.0, ce_weight=1.0)
    small_missed, big_missed = label.clone(), label.clone()
    small_missed[:, :, 18:20, 18:20, 18:20] = 1
    big_missed[:, :, 2:14, 2:14, 2:14] = 1
    sure = 8.0  # a missed lesion's voxels: tumour logit 0 against liver 8, -log p = log(1 + e^8) ~ 8.0003
    missed = torch.log1p(torch.exp(torch.tensor(sure))).item() / 2  # one lesion of two
    for pred in (small_missed, big_missed):
        assert abs(_ce(blob, _logits(pred, sure), label).item() - missed) < 1e-3
    assert _ce(blob, _logits(label, sure), label).item() < 1e-3
    # the gradient on the missed small lesion: the soft Dice's has all but vanished (p(1 - p) ~ 3e-4), the
    # cross-entropy's is 1 / (2 lesions x 8 voxels) a voxel
    grads = {}
    for name, term in (("dice", _dice), ("ce", _ce)):
        logits = _logits(small_missed, sure).requires_grad_()
        term(blob, logits, label).backward()
        grads[name] = logits.grad[0, 2, 18:20, 18:20, 18:20]
    assert torch.allclose(grads["ce"], torch.full_like(grads["ce"], -1 / 16), atol=1e-3)
    assert grads["dice"].abs().max() < 1e-3 * grads["ce"].abs().min()
    # forward adds the weighted term
    total = blob(_logits(small_missed, sure), label)
    parts = blob.base(_logits(small_missed, sure), label) + _dice(blob, _logits(small_missed, sure), label)
    assert torch.isclose(total, parts + missed, atol=1e-3)
