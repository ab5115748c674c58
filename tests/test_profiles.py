"""unetlib.profiles: the papermill parameters of every notebook under each run profile."""

from __future__ import annotations

import ast
import dataclasses
import json

import pytest

from unetlib.model import output_size
from unetlib.paths import PROJECT_ROOT
from unetlib.profiles import NOTEBOOKS, PROFILES, SOURCES, parameters, source_notebook
from unetlib.report import EXPERIMENTS
from unetlib.train import TrainConfig, config_from

# the chapters that train on the main data set with one shared configuration
TRAINING = ("02_train", "03_augmentation_ablation", "04_weight_maps")
# the same training notebook on the ISBI 2012 EM stack
EM = "02_train_em"
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
# parameters of the notebooks themselves, not TrainConfig options: the profile's name and the
# results file a training page writes (results/<experiment>.json)
NOTEBOOK_ONLY = {"profile", "experiment"}


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
    assert set(NOTEBOOKS) <= set(PROFILES[profile])
    for notebook in NOTEBOOKS:
        params = parameters(profile, notebook)
        assert params["profile"] == profile
        assert "data_root" in params and params["data_root"] is None


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebooks_declare_every_parameter_a_profile_sets(profile, notebook):
    """papermill only warns about parameters a notebook does not declare; make it an error."""
    missing = set(parameters(profile, notebook)) - set(_declared(notebook))
    assert not missing, f"{notebook} does not declare {missing} (set by profile {profile})"


def test_overrides_are_applied_and_can_add_names():
    params = parameters("smoke", "02_train", {"steps": 5, "lr": 0.1, "new_option": "x"})
    assert params["steps"] == 5 and params["lr"] == 0.1 and params["new_option"] == "x"
    assert params["batch_size"] == PROFILES["smoke"]["02_train"]["batch_size"]
    # overrides also beat the common parameters
    assert parameters("quick", "07_results", {"profile": "mine"})["profile"] == "mine"


def test_returned_parameters_are_copies():
    params = parameters("quick", "02_train", {"steps": 1})
    params["dataset"] = "changed"
    assert PROFILES["quick"]["02_train"]["steps"] != 1
    assert PROFILES["quick"]["02_train"]["dataset"] == "DIC-C2DH-HeLa"
    assert parameters("quick", "02_train")["dataset"] == "DIC-C2DH-HeLa"


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
    """Identical parameters give identical TrainConfig keys, so a run trained by one chapter is
    reused by the next (unetlib.train.train(reuse=True))."""
    first, *rest = (parameters(profile, nb) for nb in TRAINING)
    assert all(p == first for p in rest)
    keys = {config_from(parameters(profile, nb)).key() for nb in TRAINING}
    assert len(keys) == 1


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", (*TRAINING, EM))
def test_training_parameters_are_train_config_fields(profile, notebook):
    params = parameters(profile, notebook)
    unknown = set(params) - TRAIN_FIELDS - NOTEBOOK_ONLY
    assert not unknown, f"{profile}/{notebook}: {unknown} are not TrainConfig fields"
    # and they all arrive in the configuration the notebook builds (config_from drops others)
    config = config_from(params)
    for name in set(params) - NOTEBOOK_ONLY:
        assert getattr(config, name) == params[name], name


@pytest.mark.parametrize("notebook", (*TRAINING, EM))
def test_training_notebooks_declare_only_train_config_options(notebook):
    declared = _declared(notebook)
    assert "profile" in declared
    assert set(declared) - TRAIN_FIELDS <= NOTEBOOK_ONLY
    # the three training notebooks declare the same options with the same defaults
    options = {k: v for k, v in declared.items() if k not in NOTEBOOK_ONLY}
    assert options == {k: v for k, v in _declared(TRAINING[0]).items() if k not in NOTEBOOK_ONLY}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_em_chapter_is_the_training_chapter_on_isbi(profile):
    em, train = parameters(profile, EM), parameters(profile, "02_train")
    assert em["experiment"] == EM and EM in EXPERIMENTS
    assert em["dataset"] == ("synthetic" if profile == "smoke" else "isbi2012")
    assert {k: v for k, v in em.items() if k not in ("dataset", "experiment")} == {
        k: v for k, v in train.items() if k != "dataset"}
    # its own results file, not 02_train's: the page must not overwrite the HeLa results
    assert _declared("02_train").get("experiment", "02_train") == "02_train"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_em_runs_are_not_the_hela_runs_except_on_synthetic_data(profile):
    em = config_from(parameters(profile, EM))
    train = config_from(parameters(profile, "02_train"))
    assert (em.key() == train.key()) == (profile == "smoke")


def test_notebook_only_parameters_are_not_train_config_fields():
    assert not NOTEBOOK_ONLY & TRAIN_FIELDS


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_training_geometry_is_valid(profile):
    """The training crops are a valid input of the configured network and the prediction tile
    is its output for such a crop (the paper's 572 -> 388)."""
    config = config_from(parameters(profile, "02_train"))
    out = output_size(config.image_size, config.depth, config.padding)
    assert out == config.tile


def test_profile_scales():
    smoke, quick, paper = (parameters(p, "02_train") for p in ("smoke", "quick", "paper"))
    assert smoke["dataset"] == "synthetic"
    assert quick["dataset"] == paper["dataset"] == "DIC-C2DH-HeLa"
    assert smoke["steps"] < quick["steps"] < paper["steps"]
    # the paper's protocol: the 2015 network, SGD with momentum 0.99, batch 1, 572 -> 388 tiles
    assert (paper["depth"], paper["base_channels"], paper["padding"]) == (5, 64, "valid")
    assert (paper["optimizer"], paper["momentum"], paper["batch_size"]) == ("sgd", 0.99, 1)
    assert (paper["image_size"], paper["tile"]) == (572, 388)
    assert parameters("paper", "06_performance")["run_benchmarks"] is True
    assert parameters("smoke", "06_performance")["run_benchmarks"] is False


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", ["01_data", "05_explore"])
def test_data_chapters_use_the_training_data_set(profile, notebook):
    assert parameters(profile, notebook)["dataset"] == parameters(profile, "02_train")["dataset"]
