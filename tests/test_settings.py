"""The app's options: --conf strings and request values read by one function, refused with the option's name in the
same words, all documented in docs/options.md."""

from __future__ import annotations

import pytest

from lib.errors import InvalidInput
from lib.settings import DEMO_CHECKPOINT, Settings, documentation, read, request_options

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
    ({"crop_ratios": "0,0,0"}, "crop_ratios"), ({"crop_ratios": "1,1,1,1,1"}, "crop_ratios"),
    ({"serve_window_s": "-1"}, "serve_window_s"),
    ({"publish_metric": "val_loss"}, "publish_metric"),
    ({"fatty_liver_floor_hu": "-50"}, "fatty_liver_floor_hu"),  # under the window: a liver there reads as -21
])
def test_bad_values_name_the_option(conf, name):
    with pytest.raises(ValueError, match=f"--conf {name}"):
        Settings.from_conf(conf)


def test_every_option_is_in_the_options_page_with_its_default_and_scope():
    page = (ROOT / "docs" / "options.md").read_text()
    conf, request = documentation()
    rows = [f"| `{name}` | `{default}` | {scope} | {meaning} |" for name, default, scope, meaning in conf + request]
    missing = [row for row in rows if row not in page]
    assert not missing, "docs/options.md lacks these rows (or has them otherwise):\n" + "\n".join(missing)


@pytest.mark.parametrize("name, conf_text, request_value", [
    ("roi_size", "100", 100), ("roi_size", "8,8", [8, 8]), ("sw_overlap", "1.5", 1.5), ("amp", "maybe", "maybe"),
    ("cpu_bf16", "2", 2), ("loss", "focal", "focal"), ("max_epochs", "0", 0), ("max_epochs", "2.5", 2.5),
    ("crop_ratios", "1,2", "1,2"), ("weight_average", "1", 1.0), ("learning_rate", "0", 0),
    ("lr_schedule", "linear", "linear"),
])
def test_a_request_value_is_refused_with_the_words_of_its_conf_option(name, conf_text, request_value):
    with pytest.raises(ValueError) as conf_error:
        Settings.from_conf({name: conf_text})
    scope = "infer" if name in ("roi_size", "sw_overlap") else "train"
    with pytest.raises(InvalidInput) as request_error:
        request_options({name: request_value}, scope, Settings())
    assert str(conf_error.value) == "--conf " + str(request_error.value).replace(repr(request_value), repr(conf_text))
    assert request_error.value.status_code == 422 and str(request_error.value).startswith(f"{name} must be")


@pytest.mark.parametrize("name, value", [("cascade", "maybe"), ("fit_windows", 3), ("uncertainty", "often"),
                                         ("resume", "maybe"), ("pretrained", "sometimes"), ("seed", "x"),
                                         ("val_interval", 0), ("dataset", "CacheDataset"), ("count", 0)])
def test_request_only_options_are_refused_never_defaulted(name, value):
    scope = next(s for s in ("infer", "train", "activelearning") if name in request_options({}, s, Settings()))
    with pytest.raises(InvalidInput, match=f"^{name} must be"):
        request_options({name: value}, scope, Settings())


def test_request_values_are_typed_as_their_options():
    infer = request_options({"roi_size": "128", "cascade": "false", "sw_overlap": 0, "cpu_bf16": True}, "infer",
                            Settings.from_conf({"locator_path": "none"}))
    assert infer["roi_size"] == (128, 128, 128) and infer["cascade"] is False and infer["sw_overlap"] == 0.0
    assert infer["fit_windows"] is True and infer["uncertainty"] is False and infer["sw_batch_size"] == 1
    train = request_options({"max_epochs": 3.0, "resume": "yes", "crop_ratios": "1,1,2"}, "train",
                            Settings.from_conf({"max_epochs": "7", "loss": "dice"}))
    assert train["max_epochs"] == 3 and train["resume"] is True and train["loss"] == "dice"
    assert train["seed"] == -1 and train["pretrained"] is True
    assert request_options({"count": "3"}, "activelearning", Settings())["count"] == 3
    assert read("spacing", [1, 2, 3]) == (1.0, 2.0, 3.0) and read("spacing", "2") == (2.0, 2.0, 2.0)


def test_settings_made_in_code_are_checked_too():
    with pytest.raises(ValueError, match="sw_overlap must be in"):
        Settings(sw_overlap=1.0)
