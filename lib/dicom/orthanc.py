"""A local Orthanc PACS with its DICOMweb plugin, for OHIF and the app's DICOMweb datastore.

Debian's `orthanc` and `orthanc-dicomweb` packages provide it. The configuration written here loads the DICOMweb
plugin only: under OHIF's frame requests Orthanc 1.10 crashes inside its GDCM plugin. Orthanc has no bind-address
setting; `RemoteAccessAllowed: false` makes it refuse every client that is not on this machine.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

PLUGIN_GLOBS = ("/usr/share/orthanc/plugins*/libOrthancDicomWeb.so*",
                "/usr/lib/orthanc/plugins*/libOrthancDicomWeb.so*",
                "/usr/local/share/orthanc/plugins*/libOrthancDicomWeb.so*")


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc")


def dicomweb_plugin() -> str | None:
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def missing() -> str | None:
    """Why Orthanc cannot be started here, or None."""
    if not orthanc_binary():
        return "Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb)"
    if not dicomweb_plugin():
        return "Orthanc's DICOMweb plugin is not installed (Debian: apt-get install orthanc-dicomweb)"
    return None


def write_config(folder: Path, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "liver-tumor-orthanc",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [dicomweb_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        "StableAge": 1,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=1))
    return path


class Orthanc:
    """Orthanc on 127.0.0.1:`port`, storing under `folder`; a context manager that stops it on exit."""

    def __init__(self, folder: Path, port: int = 8042) -> None:
        why = missing()
        if why:
            raise RuntimeError(why)
        self.folder, self.port = Path(folder), port
        self.url = f"http://127.0.0.1:{port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "Orthanc":
        config = write_config(self.folder, self.port)
        log = open(self.folder / "orthanc.log", "ab")
        self.process = subprocess.Popen([orthanc_binary(), str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see {self.folder / 'orthanc.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/system", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "Orthanc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
