"""The layout keeps its layers: `scripts/import-arrows` finds no import that runs back up and no broken rule in
the project, and does find them in a tree made to have them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "import-arrows"


def arrows(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=60)


def test_no_import_runs_back_up_and_every_rule_holds():
    done = arrows(ROOT)
    assert done.returncode == 0, done.stdout
    assert "no arrow runs back up; every rule holds" in done.stdout
    assert "lib/infers/" in done.stdout and "lib/cascade/" in done.stdout  # it read the real tree


def test_a_loop_and_a_broken_rule_are_found(tmp_path):
    files = {
        "lib/__init__.py": "",
        "lib/settings.py": "from .infers.task import Task\n",  # runs back up: infers imports settings
        "lib/infers/__init__.py": "",
        "lib/infers/task.py": "from ..settings import read\n\nclass Task: ...\n",
        "lib/trainers/__init__.py": "",
        "lib/trainers/train.py": "from ..bench import speed\n",  # only the CLI may import the benchmarks
        "lib/bench/__init__.py": "",
        "lib/bench/speed.py": "",
        "apps/app/main.py": "import lib.settings\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    done = arrows(tmp_path)
    assert done.returncode == 1
    assert "runs back up: lib/settings.py -> lib/infers/ (lib.settings -> lib.infers.task)" in done.stdout
    assert "lib/trainers/ imports lib/bench/" in done.stdout
