"""unetlib.config: the options of a training run, their checks, their key and the command line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import unetlib.config as C

TINY = dict(dataset="synthetic", image_size=64, n_train=4, n_test=2, depth=2, base_channels=4,
            padding="same", batch_norm=False, dropout=0.0, optimizer="adam", lr=3e-3, steps=4,
            batch_size=2, eval_every=2, input_tile=64, progress=False, seed=3)


def tiny(**kw) -> C.TrainConfig:
    return C.TrainConfig(**{**TINY, **kw})


@pytest.mark.parametrize("field, value", [("padding", "full"), ("loss", "mse"),
                                          ("optimizer", "lbfgs"), ("up_mode", "nearest"),
                                          ("steps", 0), ("batch_size", 0), ("val_fraction", 1.0),
                                          ("augment", "elastic,warp"),
                                          ("lr_schedule", "cosine"), ("threshold", 1.0),
                                          ("dataset", "../../x"), ("dataset", "/etc"),
                                          ("dataset", ".."), ("dataset", "a\\b"),
                                          ("n_train", -1), ("n_test", -2), ("device", "banana"),
                                          ("device", "cuda:x"), ("ema", 1.0), ("patience", -1),
                                          ("threshold", 0.0), ("time_limit", -1.0)])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        C.TrainConfig(**{field: value})


def test_out_dir_that_is_a_file_is_refused_before_training(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("mine")
    with pytest.raises(ValueError, match="out_dir.*is a file"):
        C.TrainConfig(out_dir=str(f))
    assert f.read_text() == "mine"


@pytest.mark.parametrize("spec, parts", [("all", C.AUGMENT_PARTS), ("none", ()), ("", ()),
                                         ("elastic, flip", ("elastic", "flip"))])
def test_augment_parts(spec, parts):
    assert C.augment_parts(spec) == parts


def test_key_ignores_presentation_but_not_results():
    a = tiny()
    assert a.key() == tiny(progress=True, out_dir="elsewhere", reuse=False).key()
    assert a.key() != tiny(w0=0.0).key()
    assert a.key() != tiny(seed=4).key()
    # the Gaussian field's options count only with that field; runs of the paper's field keep
    # the keys they had before the option existed
    assert a.key() == tiny(elastic_alpha=5.0, elastic_smooth=3.0).key()
    simard = tiny(elastic_field="gaussian")
    assert a.key() != simard.key() != tiny(elastic_field="gaussian",
                                          elastic_alpha=5.0).key()
    assert simard.key() != tiny(elastic_field="gaussian", elastic_smooth=3.0).key()


def test_config_from_takes_known_names_only():
    cfg = C.config_from({"steps": 7, "profile": "smoke", "np": np, "lr": 0.5}, seed=9)
    assert (cfg.steps, cfg.lr, cfg.seed) == (7, 0.5, 9)


def test_fast_step_options_leave_old_keys_alone():
    assert C.TrainConfig().key() == C.TrainConfig(channels_last=False, amp_cpu=False).key()
    assert C.TrainConfig(channels_last=True).key() != C.TrainConfig().key()
    assert C.TrainConfig(amp_cpu=True).key() != C.TrainConfig(channels_last=True).key()


def test_zoom_option_leaves_old_keys_alone_and_needs_the_augmentation():
    assert C.TrainConfig(max_scale=0.0).key() == C.TrainConfig().key()
    assert C.TrainConfig(max_scale=0.4).key() != C.TrainConfig().key()
    with pytest.raises(ValueError, match="max_scale"):
        C.TrainConfig(max_scale=0.4, augment="none")
    with pytest.raises(ValueError, match="max_scale"):
        C.TrainConfig(max_scale=-1.0)


def test_the_book_runs_keep_their_keys():
    """The committed results name their runs' folders: a new option must leave the key of every
    configuration without it as it was, or `make book` would no longer find what it trained."""
    import json

    from unetlib.paths import PROJECT_ROOT
    from unetlib.profiles import train_config

    saved = json.loads((PROJECT_ROOT / "book" / "results" / "02_train.json").read_text())
    run = saved["runs"]["seed 0"]
    config = C.TrainConfig(**{k: v for k, v in run["config"].items()
                              if k in {f.name for f in dataclasses.fields(C.TrainConfig)}})
    assert config.run_name() == run["run"]
    fixed = train_config("quick", "02_train", amp_cpu=run["config"]["amp_cpu"])
    assert fixed.key() == config.key()


def test_every_option_has_its_meaning_and_default_in_the_help(capsys):
    helps = C.field_help()
    assert all(helps.get(f) for f in C.TrainConfig.__dataclass_fields__), \
        [f for f in C.TrainConfig.__dataclass_fields__ if not helps.get(f)]
    assert "border weight of eq. 2" in helps["w0"] and "# " not in " ".join(helps.values())
    with pytest.raises(SystemExit):
        C.parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--silver-val SILVER_VAL" in text and "(default: 0)" in text
    assert "learning rate (the paper gives none) (default: 0.01)" in text
