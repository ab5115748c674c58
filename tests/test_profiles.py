"""unetlib.profiles: the papermill parameters of every notebook under each run profile."""

from __future__ import annotations

import ast
import dataclasses
import json

import pytest

from unetlib.config import TrainConfig
from unetlib.model import output_size
from unetlib.paths import PROJECT_ROOT
from unetlib.profiles import (
    NOTEBOOKS,
    PROFILES,
    SOURCES,
    TRAINING_PAGES,
    parameters,
    source_notebook,
    train_config,
)
from unetlib.report import EXPERIMENTS
from unetlib.tiling import _plan, one_pass_tile, padded_extent

# the chapters that train on the main data set with one shared configuration
TRAINING = ("02_train", "03_augmentation_ablation", "04_weight_maps")
# the same training notebook on the ISBI 2012 EM stack
EM = "02_train_em"
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
# the parameters of a training page: the profile, the page (its options in the profile and its
# results file, results/<experiment>.json) and a dict of TrainConfig overrides
TRAINING_PARAMS = {"profile", "experiment", "overrides", "n_seeds"}


def _declared(notebook: str) -> dict[str, object]:
    """Names and literal values assigned in the notebook's cell tagged ``parameters``."""
    path = PROJECT_ROOT / "notebooks" / f"{source_notebook(notebook)}.ipynb"
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{notebook}: expected one parameters cell"
    out = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                out[target.id] = ast.literal_eval(node.value)
    return out


def test_profiles_are_the_documented_three():
    assert set(PROFILES) == {"smoke", "quick", "paper"}
    assert NOTEBOOKS == tuple(sorted(NOTEBOOKS))
    sources = {p.stem for p in (PROJECT_ROOT / "notebooks").glob("*.ipynb")}
    assert {source_notebook(n) for n in NOTEBOOKS} == sources


def test_source_notebooks():
    assert source_notebook(EM) == "02_train"
    for name in NOTEBOOKS:
        if name not in SOURCES:
            assert source_notebook(name) == name
        assert (PROJECT_ROOT / "notebooks" / f"{source_notebook(name)}.ipynb").is_file()
    assert set(SOURCES) <= set(NOTEBOOKS)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_has_every_notebook(profile):
    assert set(TRAINING_PAGES) == set(PROFILES[profile]["train"])
    for notebook in NOTEBOOKS:
        params = parameters(profile, notebook)
        assert params["profile"] == profile
        if notebook in TRAINING_PAGES:
            assert params == {"profile": profile, "experiment": notebook, "overrides": {},
                              "n_seeds": 3 if (profile, notebook) == ("quick", "02_train") else
                              2 if (profile, notebook) == ("smoke", "02_train") else 1}
        else:
            assert "data_root" in params and params["data_root"] is None


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebooks_declare_every_parameter_a_profile_sets(profile, notebook):
    """papermill only warns about parameters a notebook does not declare; make it an error."""
    missing = set(parameters(profile, notebook)) - set(_declared(notebook))
    assert not missing, f"{notebook} does not declare {missing} (set by profile {profile})"


def test_overrides_go_into_the_training_pages_config():
    params = parameters("smoke", "02_train", {"steps": 5, "lr": 0.1})
    assert params["overrides"] == {"steps": 5, "lr": 0.1}
    config = train_config("smoke", "02_train", **params["overrides"])
    assert config.steps == 5 and config.lr == 0.1
    assert config.batch_size == PROFILES["smoke"]["train"]["02_train"]["batch_size"]
    # overrides also beat the common parameters of the other pages
    assert parameters("quick", "07_results", {"profile": "mine"})["profile"] == "mine"


@pytest.mark.parametrize("field", sorted(TRAIN_FIELDS - {"extra"}))
def test_every_train_config_field_can_be_overridden(field):
    """One source for run options: every TrainConfig field reaches the config from -p."""
    default = getattr(TrainConfig(), field)
    value = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v / 2,
             str: lambda v: v}.get(type(default), lambda v: v)(default)
    if field in ("input_tile",):
        value = 64
    if field in ("data_root", "class_weights"):
        value = "x"
    choices = {"padding": "same", "loss": "bce_dice", "optimizer": "adam", "lr_schedule": "poly",
               "up_mode": "bilinear", "truth": "silver", "augment": "none", "dataset": "isbi2012",
               "device": "cpu", "out_dir": "elsewhere", "select_by": "val_seg",
               "elastic_field": "gaussian"}
    value = choices.get(field, value)
    needs = {"silver_gap": {"truth": "silver"}}  # options that only mean something with another
    params = parameters("smoke", "02_train", {**needs.get(field, {}), field: value})
    assert getattr(train_config("smoke", "02_train", **params["overrides"]), field) == value


@pytest.mark.parametrize("overrides, named", [
    ({"steps": "abc"}, "steps"), ({"steps": 2.7}, "steps"), ({"batch_norm": 1}, "batch_norm"),
    ({"optimizer": "adamw"}, "optimizer"), ({"input_tile": 388, "depth": 5,
                                             "padding": "valid"}, "input_tile"),
    ({"seed_threshold": 1.5}, "seed_threshold"), ({"truth": "bronze"}, "truth"),
    ({"elastic_field": "simard"}, "elastic_field"), ({"elastic_alpha": -1.0}, "elastic_alpha"),
    ({"elastic_smooth": float("nan")}, "elastic_smooth"),
])
def test_bad_overrides_are_errors_naming_the_option(overrides, named):
    with pytest.raises(ValueError, match=named):
        parameters("smoke", "02_train", overrides)


def test_unknown_training_option_is_named():
    with pytest.raises(ValueError, match="stepz"):
        train_config("smoke", "02_train", stepz=3)
    with pytest.raises(ValueError, match="does not train"):
        train_config("smoke", "01_data")


def test_returned_parameters_are_copies():
    params = parameters("quick", "02_train", {"steps": 1})
    params["overrides"]["steps"] = 2
    assert PROFILES["quick"]["train"]["02_train"]["steps"] not in (1, 2)
    assert train_config("quick", "02_train").dataset == "DIC-C2DH-HeLa"
    params = parameters("quick", "01_data")
    params["dataset"] = "changed"
    assert parameters("quick", "01_data")["dataset"] == "DIC-C2DH-HeLa"


@pytest.mark.parametrize("profile, notebook, named", [
    ("huge", "02_train", "'huge'"),
    ("", "02_train", "''"),
    ("smoke", "99_nothing", "'99_nothing'"),
    ("smoke", "02_train.ipynb", "'02_train.ipynb'"),
])
def test_unknown_profile_or_notebook_is_named(profile, notebook, named):
    with pytest.raises(ValueError, match=named):
        parameters(profile, notebook)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_training_chapters_share_training_parameters(profile):
    """Identical options give identical TrainConfig keys, so a run trained by one chapter is
    reused by the next (unetlib.train.train(reuse=True))."""
    keys = {train_config(profile, nb).key() for nb in TRAINING}
    assert len(keys) == 1


@pytest.mark.parametrize("notebook", (*TRAINING, EM))
def test_training_notebooks_declare_the_profile_and_overrides_only(notebook):
    declared = _declared(notebook)
    assert set(declared) == TRAINING_PARAMS
    assert declared["overrides"] == {} and declared["profile"] == "smoke"
    assert declared["n_seeds"] == 1


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_em_chapter_is_the_training_chapter_on_isbi(profile):
    em, train = train_config(profile, EM), train_config(profile, "02_train")
    assert EM in EXPERIMENTS and parameters(profile, EM)["experiment"] == EM
    assert em.dataset == ("synthetic" if profile == "smoke" else "isbi2012")
    # the same run on other data, less the silver validation frames the EM stack does not have
    assert dataclasses.replace(em, dataset=train.dataset, silver_val=train.silver_val) == train
    assert em.silver_val == 0
    # its own results file, not 02_train's: the page must not overwrite the HeLa results
    assert _declared("02_train")["experiment"] == "02_train"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_em_runs_are_not_the_hela_runs_except_on_synthetic_data(profile):
    em, train = train_config(profile, EM), train_config(profile, "02_train")
    assert (em.key() == train.key()) == (profile == "smoke")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_training_geometry_is_valid(profile):
    """The training crops are a valid input of the configured network and the prediction's input
    tile is valid too (the paper's 572, whose output is 388)."""
    config = train_config(profile, "02_train")
    output_size(config.image_size, config.depth, config.padding)  # raises when invalid
    output_size(config.input_tile, config.depth, config.padding)


@pytest.mark.parametrize("page", TRAINING_PAGES)
def test_quick_prediction_takes_one_tile_a_frame(page):
    """Both data sets' frames are 512 x 512: the quick profile's tile covers one in a single pass
    (at five levels the former 608-pixel tile took four, the same probabilities 4x slower)."""
    config = train_config("quick", page)
    assert config.input_tile == one_pass_tile(512, config.depth, config.padding)
    stride, margin = _plan(config.depth, config.padding, config.input_tile, None)
    assert padded_extent(512, config.input_tile, stride, margin)[0] == 1


def test_profile_scales():
    smoke, quick, paper = (train_config(p, "02_train") for p in ("smoke", "quick", "paper"))
    assert smoke.dataset == "synthetic"
    assert quick.dataset == paper.dataset == "DIC-C2DH-HeLa"
    assert smoke.steps < quick.steps < paper.steps
    # the paper's protocol: the 2015 network, SGD with momentum 0.99, batch 1, 572 -> 388 tiles
    assert (paper.depth, paper.base_channels, paper.padding) == (5, 64, "valid")
    assert (paper.optimizer, paper.momentum, paper.batch_size) == ("sgd", 0.99, 1)
    assert (paper.image_size, paper.input_tile) == (572, 572)
    assert output_size(paper.input_tile, paper.depth, paper.padding) == 388
    assert parameters("paper", "06_performance")["run_benchmarks"] is True
    assert parameters("smoke", "06_performance")["run_benchmarks"] is False


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", ["01_data", "05_explore"])
def test_data_chapters_use_the_training_data_set(profile, notebook):
    assert parameters(profile, notebook)["dataset"] == train_config(profile, "02_train").dataset


@pytest.mark.parametrize("overrides, named", [({"experiment": "../../x"}, "experiment"),
                                              ({"experiment": "/tmp/x"}, "experiment"),
                                              ({"n_seeds": 0}, "n_seeds"),
                                              ({"n_seeds": 2.5}, "n_seeds")])
def test_training_page_names_are_checked_before_a_kernel_starts(overrides, named):
    with pytest.raises(ValueError, match=named):
        parameters("smoke", "02_train", overrides)


@pytest.mark.parametrize("native", [True, False])
def test_auto_bf16_resolves_to_what_the_cpu_computes_natively(monkeypatch, native):
    """The quick profile's "auto" becomes True exactly where the CPU has native bf16; an
    explicit value wins, and the config itself only ever holds a bool."""
    import unetlib.provenance as P
    from unetlib.config import TrainConfig

    monkeypatch.setattr(P, "cpu_bf16", lambda: native)
    assert PROFILES["quick"]["train"]["02_train"]["amp_cpu"] == "auto"
    assert train_config("quick").amp_cpu is native
    assert train_config("quick", amp_cpu=not native).amp_cpu is (not native)
    assert train_config("smoke", amp_cpu="auto").amp_cpu is native
    with pytest.raises(ValueError, match="amp_cpu must be bool"):
        TrainConfig(amp_cpu="auto")
