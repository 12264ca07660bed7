"""The app's options: parsed once from --conf strings, refused with the option's name, all documented."""

from __future__ import annotations

import pytest

from lib.configs.settings import DEMO_CHECKPOINT, Settings

from .conftest import ROOT


def test_defaults_are_the_seed_recipe():
    s = Settings.from_conf({})
    assert s.spacing == (1.0, 1.0, 1.0) and s.roi_size == (160, 160, 160) and s.crop_size == 96
    assert s.learning_rate == 5e-4 and s.loss == "dicece" and s.sw_overlap == 0.25
    assert s.pretrained == DEMO_CHECKPOINT


def test_conf_strings_are_parsed_by_type():
    s = Settings.from_conf({"spacing": "1.5,1.5,2", "roi_size": "[96, 96, 64]", "amp": "false", "max_epochs": "3",
                            "pretrained_path": "none", "skip_scoring": "false"})  # the last is MONAI Label's own
    assert s.spacing == (1.5, 1.5, 2.0) and s.roi_size == (96, 96, 64) and s.amp is False and s.max_epochs == 3
    assert s.pretrained is None
    assert Settings.from_conf({"spacing": "2"}).spacing == (2.0, 2.0, 2.0)


@pytest.mark.parametrize("conf, name", [
    ({"spacing": "1,2"}, "spacing"), ({"spacing": "a"}, "spacing"), ({"spacing": "0"}, "spacing"),
    ({"roi_size": "100"}, "roi_size"), ({"amp": "maybe"}, "amp"), ({"loss": "focal"}, "loss"),
    ({"dropout": "1.5"}, "dropout"), ({"max_epochs": "0"}, "max_epochs"), ({"val_split": "1"}, "val_split"),
    ({"crop_ratios": "1,2"}, "crop_ratios"), ({"crop_ratios": "1,-1,2"}, "crop_ratios"),
    ({"crop_ratios": "0,0,0"}, "crop_ratios"), ({"serve_window_s": "-1"}, "serve_window_s"),
])
def test_bad_values_name_the_option(conf, name):
    with pytest.raises(ValueError, match=f"--conf {name}"):
        Settings.from_conf(conf)


def test_every_option_is_in_the_readme_with_its_default():
    readme = (ROOT / "README.md").read_text()
    for name, default, _ in Settings.documentation():
        assert f"| `{name}` | `{default}` |" in readme, name
