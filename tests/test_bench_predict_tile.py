"""benchmarks/bench_predict_tile.py: the quick network's prediction by input tile, on a small
frame in seconds: every tile that keeps the 96-pixel margins gives the same probabilities."""

from __future__ import annotations

import json
import sys

import pytest

from unetlib.paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import bench_predict_tile  # noqa: E402


def test_tiles_are_timed_and_full_margin_tiles_agree_bitwise(tmp_path):
    out = tmp_path / "tiles.json"
    assert bench_predict_tile.main(["--size", "160", "--tiles", "256", "288", "352", "--reps",
                                    "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = data["results"]
    assert [r["tile"] for r in rows] == [256, 288, 352] and [r["margin"] for r in rows] == [96] * 3
    assert [r["tiles_a_frame"] for r in rows] == [9, 4, 1]
    assert all(r["bitwise_equal_to_first"] and r["max_abs_diff_vs_first"] == 0.0 for r in rows)
    assert all(r["median_s"] > 0 for r in rows)
    assert data["workload"]["one_pass_tile"] == 352 and data["workload"]["depth"] == 5


def test_bad_repetitions_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        bench_predict_tile.main(["--reps", "0", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
