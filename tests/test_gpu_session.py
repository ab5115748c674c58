"""benchmarks/gpu_session.py: the one prepared GPU run, dry-run on CPU so that every step's
code has run before a GPU session spends its minutes on it."""

from __future__ import annotations

import json
import sys

import pytest

from unetlib.paths import PROJECT_ROOT, data_root

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import gpu_session  # noqa: E402


def test_refuses_a_bad_step_count(tmp_path, capsys):
    assert gpu_session.main(["--out", str(tmp_path), "--train-steps", "0"]) == 2
    assert "--train-steps" in capsys.readouterr().err


def test_names_an_unknown_step(tmp_path, capsys):
    assert gpu_session.main(["--out", str(tmp_path), "--dry-run", "--only", "bench_x"]) == 2
    assert "bench_x" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (data_root() / "DIC-C2DH-HeLa").is_dir(),
                    reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_dry_run_runs_every_step(tmp_path):
    assert gpu_session.main(["--out", str(tmp_path), "--dry-run"]) == 0
    session = json.loads((tmp_path / "session.json").read_text())
    assert session["dry_run"] is True
    assert {k: v["status"] for k, v in session["steps"].items()} == {
        "cuda_tests": "ok", "bench_elastic": "ok", "bench_model": "ok", "paper_train": "ok"}
    for step in session["steps"].values():
        assert str(PROJECT_ROOT) not in step["command"]
    paper = json.loads((tmp_path / "paper_train.json").read_text())
    assert paper["config"]["input_tile"] == 572 and paper["config"]["depth"] == 5
    assert paper["steps_done"] == 2 and paper["dry_run"] is True
    assert (tmp_path / "bench_elastic_cpu.json").is_file()
    assert (tmp_path / "bench_model_cpu.json").is_file()
