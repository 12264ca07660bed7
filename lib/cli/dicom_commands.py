"""Subcommands for a PACS: `orthanc` (a local Orthanc with DICOMweb) and `dicom-store` (NIfTI studies to DICOM CT
series, stored there)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .common import CliError, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("orthanc", help="run Orthanc with DICOMweb on 127.0.0.1 until interrupted (Debian's orthanc "
                                       "and orthanc-dicomweb packages)")
    p.add_argument("--port", type=positive_int, default=8042, help="HTTP port (default 8042)")
    p.add_argument("--storage", type=output_dir, default=Path("runs/orthanc"),
                   help="folder for its database and configuration (default runs/orthanc)")
    p.set_defaults(run=run_orthanc)

    p = sub.add_parser("dicom-store", help="convert NIfTI studies to DICOM CT series and store them on a DICOMweb "
                                           "server (STOW-RS)")
    p.add_argument("studies", nargs="+", type=Path, help="NIfTI files, or folders of them")
    p.add_argument("--url", default="http://127.0.0.1:8042/dicom-web",
                   help="the DICOMweb server (default: the local Orthanc, http://127.0.0.1:8042/dicom-web)")
    p.add_argument("--keep", type=output_dir, default=None, help="also keep the DICOM files in this folder")
    p.set_defaults(run=run_dicom_store)


def run_orthanc(args: argparse.Namespace) -> None:
    from ..dicom.orthanc import Orthanc

    orthanc = Orthanc(args.storage.resolve(), args.port).start()
    sys.stderr.write(f"Orthanc: {orthanc.url} (DICOMweb: {orthanc.dicomweb}, OHIF through MONAI Label: "
                     f"--studies {orthanc.dicomweb}); Ctrl-C stops it\n")
    try:
        orthanc.process.wait()
    except KeyboardInterrupt:
        orthanc.stop()
        raise
    if orthanc.process.returncode:
        raise CliError(f"Orthanc exited with {orthanc.process.returncode}; see {args.storage / 'orthanc.log'}")


def _nifti_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"no such file or folder: {path}")
    if not files:
        raise CliError("no NIfTI files given")
    return files


def run_dicom_store(args: argparse.Namespace) -> None:
    from ..dicom.dicomweb import dicomweb_client, store_files
    from ..dicom.series import nifti_to_series

    files = _nifti_files(args.studies)
    client = dicomweb_client(args.url.rstrip("/"))
    stored = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, nifti in enumerate(files, 1):
            folder = (args.keep or Path(tmp)) / nifti.name.removesuffix(".gz").removesuffix(".nii")
            series = nifti_to_series(nifti, folder)
            try:
                store_files(client, series.files)
            except Exception as e:  # requests' connection and HTTP errors: name the server and stop
                raise CliError(f"storing {nifti.name} at {args.url} failed: {str(e).splitlines()[0]}") from e
            sys.stderr.write(f"[{n}/{len(files)}] {nifti.name}: {len(series.files)} slices, series "
                             f"{series.series_uid}\n")
            stored.append({"file": str(nifti), "StudyInstanceUID": series.study_uid,
                           "SeriesInstanceUID": series.series_uid, "slices": len(series.files)})
    print(json.dumps(stored, indent=1))
