"""benchmarks/bench_train_step.py: the phases of a training step and the three steps, run on
the smoke profile's synthetic data in seconds."""

from __future__ import annotations

import json
import sys

import pytest

from unetlib.paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import bench_train_step  # noqa: E402


def test_phases_and_variants_are_measured_and_the_losses_agree(tmp_path):
    out = tmp_path / "step.json"
    assert bench_train_step.main(["--profile", "smoke", "--steps", "2", "--warmup", "1",
                                  "--rounds", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    results = data["results"]
    assert list(results) == ["before", "channels_last", "channels_last + bf16"]
    assert results["before"]["speedup_vs_before"] == 1.0
    for r in results.values():
        assert set(r["phase_median_s"]) == set(bench_train_step.PHASES)
        assert all(t > 0 for t in r["phase_median_s"].values()) and r["steps_per_s"] > 0
        assert len(r["first_losses"]) == 5
    # the same weights, crops and draws; dropout's masks fill memory in its order, so the
    # channels-last steps drop other units (tests/test_train.py compares without dropout)
    before = results["before"]["first_losses"]
    for name in ("channels_last", "channels_last + bf16"):
        assert results[name]["first_losses"][0] == pytest.approx(before[0], rel=0.05)
    assert data["workload"]["dataset"] == "synthetic"
    from unetlib.report import train_step_table

    table = train_step_table(data)
    assert "| channels_last + bf16 |" in table and "steps/s" in table


def test_a_missing_data_set_is_an_error_not_a_synthetic_benchmark(tmp_path):
    with pytest.raises(FileNotFoundError):
        bench_train_step.main(["--data-root", str(tmp_path), "--steps", "1", "--out",
                               str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_an_override_reaches_the_benchmarked_configuration(tmp_path):
    out = tmp_path / "step.json"
    assert bench_train_step.main(["--profile", "smoke", "--steps", "1", "--warmup", "0",
                                  "--rounds", "1", "-p", "depth=2", "--out", str(out)]) == 0
    workload = json.loads(out.read_text())["workload"]
    assert workload["depth"] == 2 and workload["overrides"] == {"depth": 2}
    with pytest.raises(TypeError):  # a misspelt option is an error, not a silent default
        bench_train_step.main(["--profile", "smoke", "-p", "dept=2", "--out", str(out)])
