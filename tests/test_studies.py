"""studies/: the scripts behind the book's committed study results, run tiny on real frames."""

from __future__ import annotations

import json
import sys

import pytest

from unetlib.paths import PROJECT_ROOT, data_root
from unetlib.report import load_results

sys.path.insert(0, str(PROJECT_ROOT / "studies"))
import ablations  # noqa: E402
import border_weight  # noqa: E402
import depth  # noqa: E402
import ensemble  # noqa: E402
import few_images  # noqa: E402
import instance_grid  # noqa: E402
import outline_growth  # noqa: E402
import recipes  # noqa: E402
import schedule  # noqa: E402
import seg_breakdown  # noqa: E402
import silver_truth  # noqa: E402
import tta  # noqa: E402
import zoom_silver  # noqa: E402

HELA = (data_root() / "DIC-C2DH-HeLa").is_dir()
TINY = ["-p", "image_size=64", "-p", "depth=2", "-p", "base_channels=4", "-p", "input_tile=512",
        "-p", "n_test=1", "-p", "eval_every=1", "-p", "tune_threshold=False"]


def run_tiny(study, tmp_path, *options: str, seeds: tuple[str, ...] = ("0",)) -> dict:
    """Run an arm study's ``main`` tiny (``TINY``, no silver validation frames, ``options``
    after them) into ``tmp_path`` and return its result file."""
    name = study.__name__
    argv = ["--seeds", *seeds, "--out-dir", str(tmp_path / "runs"),
            "--out", str(tmp_path / f"{name}.json"), "-p", "silver_val=0", *TINY, *options]
    assert study.main(argv) == 0
    return load_results(tmp_path)[name]


def arm_configs(data: dict) -> dict[str, dict]:
    """Each arm's run configuration (the study ran one seed)."""
    return {name.rsplit(", seed", 1)[0]: r["config"] for name, r in data["runs"].items()}


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_few_images_trains_every_arm_on_its_frames_and_validates_on_the_same_ones(tmp_path):
    out = tmp_path / "few_images.json"
    argv = ["--frames", "1", "2", "--seeds", "0", "--steps", "2", "--silver-val", "2",
            "--out-dir", str(tmp_path / "runs"), "--out", str(out), *TINY]
    assert few_images.main(argv) == 0
    data = load_results(tmp_path)["few_images"]
    assert set(data["summaries"]) == {"1 frame, augmented", "1 frame, not augmented",
                                      "2 frames, augmented", "2 frames, not augmented"}
    frames = {name: r["frames"] for name, r in data["runs"].items()}
    assert {len(f["train"]) for name, f in frames.items() if name.startswith("1 frame")} == {1}
    assert {len(f["train"]) for name, f in frames.items() if name.startswith("2 frames")} == {2}
    # one validation set for every arm: silver frames, none of them a training frame
    assert len({tuple(f["val"]) for f in frames.values()}) == 1
    val = next(iter(frames.values()))["val"]
    assert len(val) == 2 and not set(val) & {t for f in frames.values() for t in f["train"]}
    augment = {name: r["config"]["augment"] for name, r in data["runs"].items()}
    assert all((a == "none") == ("not augmented" in n) for n, a in augment.items())
    assert str(tmp_path) not in json.dumps(data["command"])


@pytest.mark.parametrize("argv, message", [(["--frames", "0"], "--frames"),
                                           (["-p", "stepz=3"], "stepz"),
                                           (["-p", "steps"], "key=value")])
def test_few_images_refuses_bad_arguments_by_name(tmp_path, capsys, argv, message):
    with pytest.raises((SystemExit, ValueError)) as err:
        few_images.main([*argv, "--out", str(tmp_path / "x.json")])
    shown = capsys.readouterr().err + str(err.value)
    assert message in shown
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_ablations_train_every_arm_with_every_seed_in_the_chapters_configuration(tmp_path):
    from unetlib.report import describe_ablation

    data = run_tiny(ablations, tmp_path, "-p", "steps=2", seeds=("0", "1"))
    assert set(data["summaries"]) == set(ablations.ARMS)
    assert all(s["components"]["seeds"] == 2 for s in data["summaries"].values())
    configs = {name: r["config"] for name, r in data["runs"].items()}
    assert len(configs) == 6
    baseline = configs["augmentation, w0 = 10 (the paper), seed 0"]
    # each arm differs from the chapters' configuration in its own option only
    for name, config in configs.items():
        differ = {k for k in config if config[k] != baseline[k]} - {"seed"}
        arm = name.rsplit(", seed", 1)[0]
        assert differ == set(ablations.ARMS[arm]), name
    text = describe_ablation(data, "04_weight_maps")
    assert "with w0 = 0 (class balance only)" in text and "the seeds' spread" in text
    restored = [data["runs"][f"w0 = 0 (class balance only), seed {k}"]["best_step"] for k in (0, 1)]
    assert (f"step {restored[0]}, {restored[1]} with w0 = 0 (class balance only)" in text)
    assert str(tmp_path) not in json.dumps(data["command"])


def test_ablations_refuse_an_unknown_arm(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ablations.main(["--arms", "no weights", "--out", str(tmp_path / "x.json")])
    assert "--arms" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_recipes_train_every_row_in_its_own_options_and_score_them_alike(tmp_path):
    from unetlib.report import describe_arms

    data = run_tiny(recipes, tmp_path, "-p", "steps=2")
    assert set(data["summaries"]) == set(recipes.ARMS) == set(data["arms"])
    configs = arm_configs(data)
    quick = configs[recipes.QUICK]
    for arm, options in recipes.ARMS.items():
        differ = {k for k in configs[arm] if configs[arm][k] != quick[k]}
        assert differ == {k for k, v in options.items() if quick[k] != v}, arm
        # every row is scored the same way: same test frames, every instance method
        assert set(data["instances"][f"{arm}, seed 0"]) >= {"components", "distance"}
    assert configs["the paper's recipe"]["padding"] == "valid"
    assert configs["Simard-style elastic field"]["elastic_field"] == "gaussian"
    frames = {tuple(r["frames"]["test"]) for r in data["runs"].values()}
    assert len(frames) == 1
    for question, arms in recipes.QUESTIONS.items():
        text = describe_arms(data, question)
        assert all(arm in text for arm in arms) and "the seeds' spread" in text
    assert str(tmp_path) not in json.dumps(data["command"])


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_schedule_trains_each_rate_schedule_and_decides_on_validation(tmp_path):
    from unetlib.report import describe_validation_choice

    data = run_tiny(schedule, tmp_path, "-p", "steps=3", "-p", "tune_threshold=True")
    assert set(data["summaries"]) == set(schedule.ARMS)
    configs = arm_configs(data)
    assert configs[schedule.BOOK]["lr_schedule"] == "constant"
    assert configs["poly decay"]["lr_schedule"] == "poly"
    assert configs["poly decay from 4e-3"]["lr"] == 2 * configs[schedule.BOOK]["lr"]
    text = describe_validation_choice(data, "schedule")
    assert text.count("the rule**") == 2 and "validation SEG" in text


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_border_weight_changes_only_w0(tmp_path):
    data = run_tiny(border_weight, tmp_path, "-p", "steps=2")
    configs = arm_configs(data)
    book, strong = configs[border_weight.BOOK], configs["w0 = 20"]
    assert {k for k in book if book[k] != strong[k]} == {"w0"}
    assert (book["w0"], strong["w0"]) == (10.0, 20.0)


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_tta_scores_one_trained_run_both_ways_without_retraining(tmp_path):
    out = tmp_path / "tta_hela.json"
    argv = ["--page", "02_train", "--seeds", "0", "--out-dir", str(tmp_path / "runs"),
            "--out", str(out), "-p", "steps=2", "-p", "silver_val=0", *TINY]
    assert tta.main(argv) == 0
    data = load_results(tmp_path)["tta_hela"]
    assert set(data["summaries"]) == set(tta.ARMS.values())
    runs = data["runs"]
    assert {r["config"]["tta"] for r in runs.values()} == {False, True}
    assert len({r["run"] for r in runs.values()}) == 1  # one trained run, scored twice
    assert len(list((tmp_path / "runs").iterdir())) == 1
    assert all(s > 0 for s in data["eval_seconds"].values())
    assert data["page"] == "02_train"
    from unetlib.report import describe_arms

    assert "8-fold TTA" in describe_arms(data, "tta") and "Rand error" not in describe_arms(
        data, "tta")  # the challenge's scores belong to the EM stack only
    mtime = out.stat().st_mtime_ns
    assert tta.main(argv) == 0  # a rerun reuses the run (nothing new trained)
    assert len(list((tmp_path / "runs").iterdir())) == 1 and out.stat().st_mtime_ns >= mtime


def test_tta_refuses_an_unknown_page(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tta.main(["--page", "02_trian", "--out", str(tmp_path / "x.json")])
    assert "--page" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_instance_grid_chooses_on_validation_over_both_grids_without_retraining(tmp_path):
    out = tmp_path / "instance_grid.json"
    argv = ["--seeds", "0", "--out-dir", str(tmp_path / "runs"), "--out", str(out),
            "-p", "steps=2", "-p", "silver_val=0", *TINY]
    assert instance_grid.main(argv) == 0
    data = json.loads(out.read_text())
    run = data["runs"]["seed 0"]
    today, wider = run["today's grid"], run["wider grid"]
    # the wider grid holds today's, so its best validation SEG cannot be lower
    assert wider["settings"] > today["settings"] and wider["val_seg"] >= today["val_seg"]
    assert today["params"]["h"] in instance_grid.GRIDS["distance"]["h"]
    assert data["adopted"] == (data["val_gain"] >= instance_grid.ADOPT_GAIN)
    assert 0.0 <= today["test"]["seg"] <= 1.0 and data["hardware"]["cpu_count"] >= 1
    assert str(tmp_path) not in data["command"]
    assert instance_grid.main(argv) == 0  # a rerun reuses the run (nothing new trained)
    assert len(list((tmp_path / "runs").iterdir())) == 1


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_outline_growth_chooses_the_level_on_validation_without_retraining(tmp_path):
    out = tmp_path / "outline_growth.json"
    argv = ["--seeds", "0", "--out-dir", str(tmp_path / "runs"), "--out", str(out),
            "-p", "steps=2", "-p", "silver_val=0", *TINY]
    assert outline_growth.main(argv) == 0
    data = json.loads(out.read_text())
    run = data["runs"]["seed 0"]
    levels = ["none", *(str(v) for v in outline_growth.LEVELS)]
    assert list(run["val_seg"]) == list(run["test_seg"]) == levels
    # the validation frames choose; the test frames' best is only recorded
    assert run["chosen"] == outline_growth.choose_level(run["val_seg"])
    assert run["val_gain"] == run["val_seg"][run["chosen"]] - run["val_seg"]["none"] >= 0
    assert run["test_at_chosen"] == run["test_seg"][run["chosen"]]
    assert data["adopted"] == (data["val_gain"] >= outline_growth.ADOPT_GAIN)
    assert data["test_look_up"]["level"] in levels and str(tmp_path) not in data["command"]
    assert outline_growth.main(argv) == 0  # a rerun reuses the run (nothing new trained)
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_outline_growth_ties_keep_the_outlines_then_the_smaller_change():
    flat = {"none": 0.8, **{str(v): 0.8 for v in outline_growth.LEVELS}}
    assert outline_growth.choose_level(flat) == "none"
    assert outline_growth.choose_level({**flat, "0.3": 0.9, "0.2": 0.9}) == "0.3"


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_zoom_silver_trains_both_arms_on_silver_and_differs_only_in_the_zoom(tmp_path):
    data = run_tiny(zoom_silver, tmp_path, "-p", "steps=2")
    plain, zoom = (arm_configs(data)[arm] for arm in zoom_silver.ARMS)
    assert {k for k in plain if plain[k] != zoom[k]} == {"max_scale"}
    assert (plain["max_scale"], zoom["max_scale"]) == (0.0, 0.4)
    assert (plain["truth"], plain["silver_val"], plain["steps"]) == ("silver", 0, 2)
    assert data["questions"] == {"zoom_silver": list(zoom_silver.ARMS)}


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_depth_study_trains_the_gold_profile_at_four_levels_and_at_the_papers_five(tmp_path):
    data = run_tiny(depth, tmp_path, "-p", "steps=2")
    four, five = (arm_configs(data)[arm] for arm in depth.ARMS)
    assert {k for k in four if four[k] != five[k]} == {"depth"}
    assert (four["depth"], five["depth"]) == (4, 5)  # whatever the page's (here TINY's 2)
    assert (four["truth"], four["steps"]) == ("gold", 2)
    assert data["questions"] == {"depth": list(depth.ARMS)}


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_silver_truth_trains_on_silver_and_files_its_results_under_the_name_given(tmp_path):
    out = tmp_path / "silver_truth_long.json"
    argv = ["--seeds", "0", "--steps", "2", "--experiment", "silver_truth_long",
            "--out-dir", str(tmp_path / "runs"), "--out", str(out), *TINY]
    assert silver_truth.main(argv) == 0
    data = load_results(tmp_path)["silver_truth_long"]
    assert data["experiment"] == "silver_truth_long"
    config = data["runs"]["seed 0"]["config"]
    assert (config["truth"], config["silver_val"], config["steps"]) == ("silver", 0, 2)
    assert config["base_channels"] == 4  # the -p overrides reach the run
    assert set(data["summary"]) >= {"components", "distance"}
    with pytest.raises(SystemExit):  # the study is the silver truth's: -p truth=gold is refused
        silver_truth.main([*argv, "-p", "truth=gold"])


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_silver_truth_gap_experiment_goes_with_a_gap_and_leaves_the_neighbours_out(tmp_path):
    base = ["--seeds", "0", "--steps", "2", "--out-dir", str(tmp_path / "runs"), *TINY]
    with pytest.raises(SystemExit):  # the name says a gap: without one it is refused ...
        silver_truth.main([*base, "--experiment", "silver_truth_gap",
                           "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit):  # ... and a gap is filed under no other name
        silver_truth.main([*base, "-p", "silver_gap=2", "--out", str(tmp_path / "y.json")])
    with pytest.raises(SystemExit):  # a wider network goes under its own name, and only it
        silver_truth.main([*base, "-p", "base_channels=32", "--out", str(tmp_path / "z.json")])
    with pytest.raises(SystemExit):
        silver_truth.main([*base, "--experiment", "silver_truth_wide",
                           "--out", str(tmp_path / "w.json")])
    with pytest.raises(SystemExit):  # a deeper network too: its own name, and only it
        silver_truth.main([*base, "-p", "depth=5", "--out", str(tmp_path / "d.json")])
    with pytest.raises(SystemExit):
        silver_truth.main([*base, "--experiment", "silver_truth_deep",
                           "--out", str(tmp_path / "e.json")])
    with pytest.raises(SystemExit):  # the four-level names, at the profile's five levels
        silver_truth.main(["--seeds", "0", "--steps", "2", "--experiment", "silver_truth_10k",
                           "--out-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "f.json")])
    assert not list(tmp_path.glob("*.json"))
    out = tmp_path / "silver_truth_gap.json"
    assert silver_truth.main([*base, "-p", "silver_gap=2", "--experiment", "silver_truth_gap",
                              "--out", str(out)]) == 0
    frames = load_results(tmp_path)["silver_truth_gap"]["runs"]["seed 0"]["frames"]
    from unetlib.data.ctc import time_point

    val = [time_point(n) for n in frames["val"]]
    assert all(abs(time_point(n)[1] - t) > 2 for n in frames["train"] for _, t in val)
    nearby = load_results(tmp_path)["silver_truth_gap"]["neighbour_seg"]
    assert list(nearby) == ["-3", "-2", "-1", "+0", "+1", "+2", "+3"]
    assert nearby["+0"] > 0.9 and all(0 < v < nearby["+0"] for k, v in nearby.items() if k != "+0")


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_ensemble_scores_single_runs_as_trained_and_every_pair_and_all_averaged(tmp_path):
    runs = tmp_path / "runs"
    common = ["--out-dir", str(runs), *TINY, "-p", "tune_threshold=True", "-p", "truth=silver",
              "-p", "silver_val=0"]
    assert silver_truth.main(["--seeds", "0", "1", "2", "--steps", "2",
                              "--out", str(tmp_path / "silver_truth.json"), *common]) == 0
    trained = load_results(tmp_path)["silver_truth"]
    out = tmp_path / "ensemble.json"
    argv = ["--seeds", "0", "1", "2", "--out", str(out), "-p", "steps=2", *common]
    assert ensemble.main(argv) == 0
    data = json.loads(out.read_text())
    assert list(data["summaries"]) == ["one run", "two runs averaged", "all runs averaged"]
    assert [data["summaries"][a]["distance"]["seeds"] for a in data["summaries"]] == [3, 3, 1]
    assert data["members"]["all runs averaged, seeds 0+1+2"] == [
        trained["runs"][f"seed {s}"]["run"] for s in (0, 1, 2)]
    # a single run scored from its kept weights gives the numbers its own evaluation gave
    for s in (0, 1, 2):
        assert (data["instances"][f"one run, seed {s}"]["distance"]["metrics"]
                == trained["instances"][f"seed {s}"]["distance"]["metrics"])
    # the rule, on validation frames: every ensemble against the mean of its runs alone
    assert set(data["val_gains"]) == {f"two runs averaged, seeds {p}" for p in ("0+1", "0+2", "1+2")
                                      } | {"all runs averaged, seeds 0+1+2"}
    inst = data["instances"]
    alone = [inst[f"one run, seed {s}"]["distance"]["val_seg"] for s in (0, 1, 2)]
    gain = inst["all runs averaged, seeds 0+1+2"]["distance"]["val_seg"] - sum(alone) / 3
    assert data["val_gains"]["all runs averaged, seeds 0+1+2"] == pytest.approx(gain)
    assert data["adopted"] == (gain >= 0.01) and set(data["predict_seconds"]) == {"0", "1", "2"}
    assert str(tmp_path) not in data["command"]
    # nothing is trained: a seed without a kept run is an error naming its folder
    before = sorted(p.name for p in runs.iterdir())
    with pytest.raises(FileNotFoundError, match="no finished run of seed 7"):
        ensemble.main([*argv[:1], "0", "7", *argv[4:]])
    assert sorted(p.name for p in runs.iterdir()) == before
    with pytest.raises(SystemExit):
        ensemble.main(["--seeds", "0", *argv[4:]])


@pytest.mark.skipif(not HELA, reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_seg_breakdown_splits_each_kept_runs_shortfall_and_trains_nothing(tmp_path):
    runs = tmp_path / "runs"
    common = ["--out-dir", str(runs), *TINY, "-p", "tune_threshold=True", "-p", "truth=silver",
              "-p", "silver_val=0"]
    assert silver_truth.main(["--seeds", "0", "1", "--steps", "2",
                              "--out", str(tmp_path / "silver_truth.json"), *common]) == 0
    trained = load_results(tmp_path)["silver_truth"]
    out = tmp_path / "seg_breakdown.json"
    argv = ["--seeds", "0", "1", "--out", str(out), "-p", "steps=2", *common]
    with pytest.raises(SystemExit):  # the figure is a PNG ...
        seg_breakdown.main([*argv, "--figure", str(tmp_path / "f.jpg")])
    with pytest.raises(SystemExit):  # ... beside the result, which names it
        seg_breakdown.main([*argv, "--figure", str(runs / "f.png")])
    assert seg_breakdown.main([*argv, "--figure", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out.read_text())
    assert data["figure"]["path"] == "f.png" and data["figure"]["seed"] == 0
    assert data["figure"]["frame"].startswith("DIC-C2DH-HeLa/02/")
    assert list(data["arms"]) == ["seed 0", "seed 1", "all runs averaged"]
    assert data["dataset"] == "DIC-C2DH-HeLa" and str(tmp_path) not in data["command"]
    for s in (0, 1):  # each run chooses as its own evaluation did and scores what it scored
        arm, own = data["arms"][f"seed {s}"], trained["instances"][f"seed {s}"]
        for method in ("components", "distance"):
            assert arm["params"][method] == own[method]["params"]
            assert arm["test"][method]["seg"] == pytest.approx(own[method]["metrics"]["seg"])
            b = arm["test"][method]
            assert sum(c["loss"] for c in b["categories"].values()) == pytest.approx(1 - b["seg"])
        lookup = arm["test_lookup"]
        assert lookup["seg"] >= arm["test"]["distance"]["seg"] and "not a result" in lookup["note"]
    # the contrast probe: the same runs, every frame at the training frames' contrast
    assert list(data["contrast_matched"]) == ["seed 0", "seed 1"]
    assert all(0 <= a["test"]["distance"]["seg"] <= 1 for a in data["contrast_matched"].values())
    before = sorted(p.name for p in runs.iterdir())
    with pytest.raises(FileNotFoundError, match="no finished run of seed 7"):
        seg_breakdown.main(["--seeds", "7", *argv[3:]])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "f.png", "runs", "seg_breakdown.json", "silver_truth.json"]  # nothing half-written
    assert sorted(p.name for p in runs.iterdir()) == before
