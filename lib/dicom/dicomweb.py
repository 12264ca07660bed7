"""Talking to a DICOMweb server (Orthanc, a PACS) with the client MONAI Label uses: store, list, download."""

from __future__ import annotations

from pathlib import Path

import pydicom
from dicomweb_client import DICOMwebClient
from monailabel.datastore.dicom import DICOMwebClientX
from pydicom.dataset import Dataset


def dicomweb_client(url: str, username: str = "", password: str = "", qido: str = "", wado: str = "",
                    stow: str = "") -> DICOMwebClient:
    """The client MONAI Label makes for a DICOMweb server: Google Cloud credentials for Google's Healthcare API,
    otherwise its client that tolerates servers answering single parts, with a user and password if given."""
    if "googleapis.com" in url:
        from dicomweb_client.ext.gcp.session_utils import create_session_from_gcp_credentials

        return DICOMwebClient(url=url, session=create_session_from_gcp_credentials())
    session = None
    if username and password:
        from dicomweb_client.session_utils import create_session_from_user_pass

        session = create_session_from_user_pass(username, password)
    return DICOMwebClientX(url=url, session=session, qido_url_prefix=qido or None, wado_url_prefix=wado or None,
                           stow_url_prefix=stow or None)


def store_files(client: DICOMwebClient, files: list[Path], batch: int = 32) -> int:
    """STOW-RS the DICOM files in batches; returns how many were stored."""
    for i in range(0, len(files), batch):
        client.store_instances([pydicom.dcmread(str(f)) for f in files[i:i + batch]])
    return len(files)


def list_series(client: DICOMwebClient, modality: str = "CT") -> list[dict[str, str]]:
    """The server's series of one modality: SeriesInstanceUID, StudyInstanceUID, PatientID, SeriesDescription."""
    found = []
    for item in client.search_for_series(search_filters={"Modality": modality}):
        ds = Dataset.from_json(item)
        found.append({k: str(ds.get(k, "")) for k in ("SeriesInstanceUID", "StudyInstanceUID", "PatientID",
                                                        "SeriesDescription")})
    return found
