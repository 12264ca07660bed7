"""Where pre-annotation finds its studies: a folder of NIfTI files and DICOM series (mixed or not), or a DICOMweb
server. Each study becomes a NIfTI file in the work folder only when it is its turn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..dicom.series import series_to_nifti, series_uids

NIFTI = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Study:
    id: str  # a file name: the NIfTI file's name without suffix, or the SeriesInstanceUID
    kind: str  # nifti, dicom or dicomweb
    source: str  # the NIfTI file, the DICOM folder holding the series, or the server's URL

    def nifti(self, work: Path) -> Path:
        """The study as a NIfTI file (DICOM is converted, DICOMweb downloaded first)."""
        if self.kind == "nifti":
            return Path(self.source)
        out = work / "nifti" / f"{self.id}.nii.gz"
        if out.exists():
            return out
        folder = Path(self.source)
        if self.kind == "dicomweb":
            from monailabel.datastore.utils.dicom import dicom_web_download_series

            from ..dicom.dicomweb import dicomweb_client

            folder = work / "dicom" / self.id
            if not folder.exists() or not any(folder.iterdir()):
                dicom_web_download_series(None, self.id, str(folder), dicomweb_client(self.source))
        return series_to_nifti(folder, self.id, out)


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI)


def discover(studies: str) -> tuple[list[Study], list[str]]:
    """The studies at `studies` (a folder or a DICOMweb URL), sorted by id, and the files that are neither NIfTI
    nor DICOM CT (left out, and listed in the report)."""
    if studies.startswith(("http://", "https://")):
        from ..dicom.dicomweb import dicomweb_client, list_series

        series = list_series(dicomweb_client(studies.rstrip("/")))
        return sorted((Study(s["SeriesInstanceUID"], "dicomweb", studies.rstrip("/")) for s in series),
                      key=lambda s: s.id), []
    root = Path(studies)
    if not root.is_dir():
        raise FileNotFoundError(f"--studies: no such folder {root}")
    # NIfTI studies lie directly in the folder (as in a MONAI Label datastore, whose labels/ holds no studies);
    # DICOM series anywhere below it
    found = [Study(p.name[: -len(".nii.gz")] if p.name.lower().endswith(".nii.gz") else p.stem, "nifti", str(p))
             for p in sorted(root.iterdir()) if p.is_file() and _is_nifti(p)]
    others = [p for p in sorted(root.rglob("*")) if p.is_file() and not _is_nifti(p)]
    groups = series_uids(root) if others else {}
    dicom_files = {f for files in groups.values() for f in files}
    for uid, files in groups.items():
        parents = {f.parent for f in files}
        folder = parents.pop() if len(parents) == 1 else root
        found.append(Study(uid, "dicom", str(folder)))
    ids = [s.id for s in found]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"--studies: several studies are named {duplicates[:3]}: rename them")
    skipped = [str(p.relative_to(root)) for p in others if p not in dicom_files]
    return sorted(found, key=lambda s: s.id), skipped
