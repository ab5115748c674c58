"""studies/: the scripts behind the book's committed study results, run tiny on real frames."""

from __future__ import annotations

import json
import sys

import pytest

from unetlib.paths import PROJECT_ROOT, data_root
from unetlib.report import load_results

sys.path.insert(0, str(PROJECT_ROOT / "studies"))
import few_images  # noqa: E402

HELA = (data_root() / "DIC-C2DH-HeLa").is_dir()
TINY = ["-p", "image_size=64", "-p", "depth=2", "-p", "base_channels=4", "-p", "input_tile=512",
        "-p", "n_test=1", "-p", "eval_every=1", "-p", "tune_threshold=False"]


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
