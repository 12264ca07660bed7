"""`monailabel start_server` as a user starts it, in its own process group, for benchmarks and tests that drive the
real REST API: start, wait until it answers, stop or kill, start again on the same datastore."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def fresh_copies(folder: Path, studies: Path, app: Path) -> tuple[Path, Path]:
    """folder/studies and folder/app: new copies of a datastore and of the app without its trained models, as a
    server a benchmark starts should find them."""
    for sub in ("studies", "app"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    shutil.copytree(studies, folder / "studies")
    shutil.copytree(app, folder / "app", ignore=shutil.ignore_patterns("model", "__pycache__"))
    return folder / "studies", folder / "app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, app_dir: Path, studies: Path | str, conf: dict[str, str], log: Path,
                 env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.app_dir, self.studies, self.conf, self.log = Path(app_dir), studies, conf, Path(log)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bin_dir = Path(sys.executable).parent
        self.command = [str(bin_dir / "monailabel"), "start_server", "--app", str(self.app_dir), "--studies",
                        str(self.studies), "--host", "127.0.0.1", "--port", str(self.port),
                        *[a for k, v in conf.items() for a in ("--conf", k, str(v))]]
        # the monailabel launcher runs the first `python` on PATH; MONAI Label rescoring every study in the
        # background after each pick and training only competes for the CPU here
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    "MONAI_LABEL_AUTO_UPDATE_SCORING": "false", **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0, probe: str = "/info/") -> "ServerProcess":
        log = open(self.log, "a")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + probe, timeout=5):
                    return self
            except urllib.error.HTTPError:  # it answers (401 with authentication on)
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the server and the training or scoring processes it started)."""
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=60)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
