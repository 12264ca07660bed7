"""The corrections to MONAI Label's server are tied to the release they were written for: on another one the app
refuses to start, naming both. (What each correction does is tested through a running server: test_bad_input,
test_auth, test_crash, test_app_endpoints.)"""

from __future__ import annotations

import importlib.util

import monailabel
import pytest

from lib import server_fixes

from .conftest import ROOT


def test_each_patch_says_what_it_fixes():
    assert len(server_fixes.PATCHES) == 6
    for patch in server_fixes.PATCHES:
        assert patch.name and len(patch.fixes) > 40 and callable(patch.apply)


def test_another_monailabel_release_is_refused_by_name(monkeypatch):
    server_fixes.check_version()  # the installed release is the one the patches were written for
    monkeypatch.setattr(monailabel, "__version__", "0.9.0")
    with pytest.raises(RuntimeError, match=r"MONAI Label 0\.8\.5 .* MONAI Label 0\.9\.0 is installed"):
        server_fixes.check_version()


def test_the_app_refuses_to_start_on_another_release(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("liver_tumor_main", ROOT / "apps" / "liver_tumor" / "main.py")
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    monkeypatch.setattr(monailabel, "__version__", "0.9.0")
    with pytest.raises(RuntimeError, match="0.9.0 is installed"):
        main.LiverTumorApp(str(tmp_path / "app"), str(ROOT / "sample-data"), {})
    assert not (tmp_path / "app").exists()  # refused before anything was made
