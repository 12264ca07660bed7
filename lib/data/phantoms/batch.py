"""Many phantom studies into one folder, in parallel, resumable, with progress."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from .acquisition import PRESETS
from .study import GENERATOR_VERSION, generate_study, study_id, study_paths, write_study


def is_done(out_dir: Path, seed: int, index: int, preset: str) -> bool:
    """A study is complete when its image exists (written last) and its parameters match this request."""
    paths = study_paths(out_dir, study_id(seed, index))
    if not (paths["image"].exists() and paths["label"].exists() and paths["params"].exists()):
        return False
    try:
        p = json.loads(paths["params"].read_text())
    except (OSError, ValueError):
        return False
    return (p.get("seed"), p.get("index"), p.get("preset"), p.get("generator", {}).get("version")) == (
        seed, index, preset, GENERATOR_VERSION)


def _one(out_dir: str, seed: int, index: int, preset: str, with_tissue: bool) -> dict:
    study = generate_study(seed, index, preset, with_tissue)
    write_study(study, Path(out_dir))
    return study.params


def make_phantoms(out_dir: Path, count: int, seed: int, preset: str = "small", start: int = 0, jobs: int = 1,
                  with_tissue: bool = False, progress: bool = True) -> list[dict]:
    """Studies start..start+count-1 of a seed; those already there (same seed, index, preset) are kept."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(start, start + count) if not is_done(out_dir, seed, i, preset)]
    bar = tqdm(total=count, initial=count - len(todo), unit="study", desc=f"phantoms ({preset})",
               disable=not progress)
    if jobs <= 1:
        for i in todo:
            _one(str(out_dir), seed, i, preset, with_tissue)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one, str(out_dir), seed, i, preset, with_tissue) for i in todo]
            for f in as_completed(futures):
                f.result()
                bar.update()
    bar.close()
    return [json.loads(study_paths(out_dir, study_id(seed, i))["params"].read_text())
            for i in range(start, start + count)]
