"""benchmarks/gpu_session.py: the one prepared GPU run, dry-run on CPU so that every step's
code has run before a GPU session spends its minutes on it."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from unetlib.paths import PROJECT_ROOT, data_root
from unetlib.report import load_results

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import gpu_session  # noqa: E402


@pytest.mark.parametrize("flag, value", [("--train-steps", "0"), ("--quick-steps", "-1"),
                                         ("--budget", "0"), ("--paper-seconds", "-5"),
                                         ("--quick-seconds", "0")])
def test_refuses_a_bad_count_naming_the_flag(tmp_path, capsys, flag, value):
    assert gpu_session.main(["--out", str(tmp_path), flag, value]) == 2
    assert flag in capsys.readouterr().err


def test_cuda_tests_are_collected_from_the_files_that_hold_them():
    files = {p.rsplit("/", 1)[-1] for p in gpu_session.cuda_test_files()}
    assert {"test_elastic.py", "test_model.py", "test_tiling.py", "test_augment.py"} <= files
    # the notebook tests import papermill, which a GPU image need not have
    assert "test_book.py" not in files


def test_training_steps_are_given_their_training_time_and_its_overhead():
    args = argparse.Namespace(paper_seconds=420.0, quick_seconds=45.0)
    assert gpu_session.step_limit("paper_train", args) == 420.0 + gpu_session.LIMITS["paper_train"]
    assert gpu_session.step_limit("quick_seeds", args) == 135.0 + gpu_session.LIMITS["quick_seeds"]
    assert gpu_session.step_limit("bench_model", args) == gpu_session.LIMITS["bench_model"]
    defaults = argparse.Namespace(paper_seconds=120.0, quick_seconds=45.0)
    assert gpu_session.step_limit("paper_train", defaults) == 210.0  # as before the option


def test_a_spent_budget_skips_the_remaining_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_session, "step_limit", lambda name, args: 0)
    assert gpu_session.main(["--out", str(tmp_path), "--dry-run"]) == 1
    session = json.loads((tmp_path / "session.json").read_text())
    assert all(v["status"].startswith("skipped") for v in session["steps"].values())


def test_names_an_unknown_step(tmp_path, capsys):
    assert gpu_session.main(["--out", str(tmp_path), "--dry-run", "--only", "bench_x"]) == 2
    assert "bench_x" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (data_root() / "DIC-C2DH-HeLa").is_dir(),
                    reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_dry_run_runs_every_step(tmp_path):
    runs = tmp_path / "weights"
    assert gpu_session.main(["--out", str(tmp_path / "out"), "--dry-run",
                             "--runs-dir", str(runs)]) == 0
    tmp_path = tmp_path / "out"
    session = json.loads((tmp_path / "session.json").read_text())
    assert session["dry_run"] is True
    assert {k: v["status"] for k, v in session["steps"].items()} == {
        "cuda_tests": "ok", "bench_elastic": "ok", "bench_elastic_b64": "ok", "bench_model": "ok",
        "bench_weights": "ok", "paper_train": "ok", "quick_seeds": "ok"}
    # the weights stay out of the folder that comes back from the GPU machine
    assert not list(tmp_path.rglob("*.pt")) and list(runs.rglob("best.pt"))
    for step in session["steps"].values():
        assert str(PROJECT_ROOT) not in step["command"]
    # both in the results chapter's layout (unetlib.report.load_results reads them)
    paper = load_results(tmp_path)["gpu_paper"]
    run = paper["runs"]["seed 0"]
    assert run["config"]["input_tile"] == 572 and run["config"]["depth"] == 5
    assert run["steps_done"] == 2 and paper["dry_run"] is True and paper["profile"] == "paper"
    quick = load_results(tmp_path)["gpu_quick_long"]
    run = quick["runs"]["seed 0"]
    assert run["config"]["image_size"] == 256 and run["steps_done"] == 2
    assert quick["summary"]["watershed"]["seeds"] == 1 and quick["profile"] == "quick"
    assert str(PROJECT_ROOT) not in json.dumps(paper) + json.dumps(quick)
    assert (tmp_path / "bench_elastic_cpu.json").is_file()
    b64 = json.loads((tmp_path / "bench_elastic_cpu_b64.json").read_text())
    assert b64["workload"]["batch"] == 2  # the dry run's stand-in for the batch of 64
    assert (tmp_path / "bench_model_cpu.json").is_file()
    weights = json.loads((tmp_path / "bench_weights_cpu.json").read_text())
    assert all(r["max_abs_diff"] < 1e-5 for r in weights["rows"])
    assert any("torch" in k for k in weights["rows"][0])  # weight_map_torch was timed
    # the probabilities come back instead of the weights, and score a method added later
    import numpy as np

    probs = np.load(tmp_path / "gpu_probabilities_gpu_quick_long.npz")
    assert probs["seed 0|test"].dtype == np.uint16
    assert list(probs["seed 0|test|names"]) == run["frames"]["test"]
    old = json.loads((tmp_path / "gpu_quick_long.json").read_text())
    trimmed = json.loads(json.dumps(old))
    del trimmed["instances"]["seed 0"]["distance"]
    (tmp_path / "gpu_quick_long.json").write_text(json.dumps(trimmed))
    assert gpu_session.main(["--rescore", str(tmp_path)]) == 0
    new = load_results(tmp_path)["gpu_quick_long"]
    assert new["rescored"]["methods"] == ["components", "watershed", "distance"]
    for method in ("components", "distance"):  # probabilities kept to 1/65535: same choice
        assert new["instances"]["seed 0"][method]["params"] == \
            old["instances"]["seed 0"][method]["params"]
        assert new["instances"]["seed 0"][method]["metrics"]["seg"] == pytest.approx(
            old["instances"]["seed 0"][method]["metrics"]["seg"], abs=0.02)
    assert new["summary"]["distance"]["seeds"] == 1
    # probabilities of other frames than the run's are refused, naming the file
    arrays = dict(probs)
    arrays["seed 0|val|names"] = arrays["seed 0|val|names"][::-1].copy()
    np.savez_compressed(tmp_path / "gpu_probabilities_gpu_quick_long.npz", **arrays)
    with pytest.raises(ValueError, match="gpu_probabilities_gpu_quick_long.npz"):
        gpu_session.rescore(tmp_path)
