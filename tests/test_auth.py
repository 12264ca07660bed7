"""Who may use the server: MONAI Label's own authentication (bearer tokens from a Keycloak realm) against a
stand-in realm on loopback that serves its public key as Keycloak does; and the server on 127.0.0.1 by default."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import nibabel as nib
import numpy as np
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lib.bench.server import ServerProcess, free_port
from lib.settings import DEMO_CHECKPOINT

from .conftest import ROOT, copy_app

ROLES = ["monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"]
IMAGE = "phantom_2026_006"


class Realm:
    """What MONAI Label reads from Keycloak: the realm's JSON with its RSA public key; tokens signed with it."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}/realms/monailabel"
        token_path = "/realms/monailabel/protocol/openid-connect/token"
        pages = {"/realms/monailabel": {"realm": "monailabel", "public_key": base64.b64encode(public).decode()},
                 "/realms/monailabel/.well-known/openid-configuration": {
                     "issuer": self.uri, "token_endpoint": f"http://127.0.0.1:{port}{token_path}"}}
        realm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._answer(200, pages[self.path]) if self.path in pages else self._answer(404, {})

            def do_POST(self) -> None:  # noqa: N802 (Keycloak's password grant, for one user)
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                if self.path == token_path and form.get("username") == ["annotator1"] \
                        and form.get("password") == ["secret"] and form.get("grant_type") == ["password"]:
                    self._answer(200, {"access_token": realm.token(), "token_type": "bearer"})
                else:
                    self._answer(401, {"error": "invalid_grant"})

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, roles=ROLES, key=None, expires_in: float = 600) -> str:
        claims = {"preferred_username": "annotator1", "name": "Annotator One", "email": "a1@example.org",
                  "realm_access": {"roles": list(roles)}, "exp": int(time.time() + expires_in)}
        return jwt.encode(claims, key or self.key, algorithm="RS256")


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    realm = Realm()
    studies = root / "studies"
    shutil.copytree(ROOT / "sample-data", studies)
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": realm.uri}
    server = ServerProcess(copy_app(root / "app"), studies, {"pretrained_path": str(DEMO_CHECKPOINT),
                                                             "pyliverlesionseg_path": "none"},
                           root / "server.log", env=env)
    with server:
        yield server.url, studies, realm
    realm.httpd.shutdown()


def test_without_a_valid_token_nothing_is_served_or_changed(secured, tmp_path):
    url, studies, realm = secured
    image = nib.load(studies / f"{IMAGE}.nii.gz")
    label = ("l.nii", nib.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine).to_bytes())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    before = _tree(studies)
    bad = {"no token": {}, "a forged token": {"Authorization": f"Bearer {realm.token(key=other_key)}"},
           "an expired token": {"Authorization": f"Bearer {realm.token(expires_in=-60)}"},
           "not a token": {"Authorization": "Bearer not.a.token"}}
    for name, headers in bad.items():
        for method, path, files in (("GET", "/info/", None), ("POST", f"/infer/liver_tumor?image={IMAGE}", None),
                                    ("PUT", f"/datastore/label?image={IMAGE}&tag=final", {"label": label}),
                                    ("PUT", "/datastore/?image=new_study", {"file": ("s.nii.gz", b"x")}),
                                    ("POST", "/train/liver_tumor", None), ("GET", "/datastore/?output=all", None),
                                    ("GET", f"/datastore/image?image={IMAGE}", None)):
            r = requests.request(method, url + path, headers=headers, files=files, timeout=60)
            assert r.status_code == 401, (name, method, path, r.status_code, r.text[:200])
    # a user without the annotator role may look but not write
    viewer = {"Authorization": f"Bearer {realm.token(roles=['monailabel-user'])}"}
    assert requests.get(url + "/info/", headers=viewer, timeout=60).status_code == 200
    r = requests.put(f"{url}/datastore/label?image={IMAGE}&tag=final", headers=viewer, files={"label": label},
                     timeout=60)
    assert r.status_code == 403 and "monailabel-annotator" in r.text
    assert _tree(studies) == before


def test_with_a_token_it_works(secured):
    """As docs/reliability.md shows: a token from /auth/token (MONAI Label asks the realm), then requests with it."""
    url, studies, realm = secured
    r = requests.post(f"{url}/auth/token", data={"username": "annotator1", "password": "secret"}, timeout=60)
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert requests.get(f"{url}/auth/token/valid", headers=headers, timeout=60).json()["username"] == "annotator1"
    assert requests.get(url + "/info/", headers=headers, timeout=60).json()["models"]["liver_tumor"]
    r = requests.post(f"{url}/infer/liver_tumor?image={IMAGE}&output=json", headers=headers, timeout=300)
    assert r.status_code == 200 and r.json()["liver_volume_ml"] > 0
    image = nib.load(studies / f"{IMAGE}.nii.gz")
    label = np.zeros(image.shape, np.uint8)
    label[20:40, 20:40, 10:20] = 1
    r = requests.put(f"{url}/datastore/label?image={IMAGE}&tag=final", headers=headers,
                     files={"label": ("l.nii", nib.Nifti1Image(label, image.affine).to_bytes())}, timeout=60)
    assert r.status_code == 200, r.text
    assert np.array_equal(np.asanyarray(nib.load(studies / "labels" / "final" / f"{IMAGE}.nii").dataobj), label)


def test_make_serve_listens_on_loopback_only(tmp_path):
    """The README's `make serve` binds 127.0.0.1: the port is open there and on no other address."""
    port = free_port()
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", "runs", ".git", "__pycache__"))
    shutil.rmtree(repo / "apps" / "liver_tumor" / "model", ignore_errors=True)  # models trained here
    # no background rescoring of every study at start (MONAI Label's default): it would only compete for the CPU
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    # this environment's venv, and no install step (STAMP empty)
    make = ["make", "-s", "serve", f"PORT={port}", f"VENV={Path(sys.executable).parents[1]}", "STAMP="]
    proc = subprocess.Popen(make, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None and time.time() < deadline, "make serve did not start"
            try:
                requests.get(f"http://127.0.0.1:{port}/info/", timeout=5)
                break
            except requests.RequestException:
                time.sleep(1)
        listening = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:  # 0A: LISTEN
                listening.add(local.split(":")[0])
        assert listening == {"0100007F"}, listening  # 127.0.0.1, little-endian hex
        assert not [ln for ln in Path("/proc/net/tcp6").read_text().splitlines()[1:]
                    if ln.split()[3] == "0A" and int(ln.split()[1].split(":")[1], 16) == port]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
