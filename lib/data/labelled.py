"""Studies with ground truth beside them: what bench accuracy, bench probe and the device check measure on. Kept
free of torch and MONAI so that a folder without labels is refused at once."""

from __future__ import annotations

from pathlib import Path


def labelled_studies(studies: Path, truth: Path | None = None) -> list[tuple[str, Path, Path]]:
    """(id, image, label) of each image in `studies` with a label of the same name in `truth` (STUDIES/truth)."""
    truth = truth or studies / "truth"
    cases = [(p.name.removesuffix(".nii.gz"), p, truth / p.name) for p in sorted(studies.glob("*.nii.gz"))
             if (truth / p.name).exists()]
    if not cases:
        raise ValueError(f"no study in {studies} has a label of the same name in {truth}")
    return cases
