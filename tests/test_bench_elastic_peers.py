"""benchmarks/bench_elastic_peers.py: a dry run with the peers this environment has (unetlib,
elasticdeform, torchvision), the others skipped; a missing peer that is not skipped is an error."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from unetlib.paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import bench_elastic_peers as bench  # noqa: E402

pytest.importorskip("elasticdeform", reason="elasticdeform==0.5.1 is the reference")
pytest.importorskip("torchvision")

OPTIONAL = ["kornia", "monai", "torchio", "albumentations", "batchgeneratorsv2"]


@contextmanager
def _isolated():
    """The script sets torch's thread count, the global RNGs and warning filters: restore them."""
    threads, np_state = torch.get_num_threads(), np.random.get_state()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            np.random.set_state(np_state)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("peers") / "peers.json"
    with _isolated():
        bench.main(["--dry-run", "--skip", *OPTIONAL, "--out", str(out)])
    return json.loads(out.read_text())


def _row(payload: dict, peer: str) -> dict:
    (row,) = [r for r in payload["results"] if r["peer"] == peer]
    return row


def test_dry_run_rows(dry_run):
    assert [r["peer"] for r in dry_run["results"]] == ["unetlib", "elasticdeform", "torchvision"]
    assert dry_run["workload"]["batch"] == 2 and dry_run["workload"]["size"] == [64, 64]
    for peer, exact in [("unetlib", True), ("elasticdeform", True), ("torchvision", False)]:
        row = _row(dry_run, peer)
        assert row["exact"] is exact
        assert row["labels_kept"] is True and row["shape_ok"] is True
        assert row["image_finite"] is True and row["per_sample_fields"] is True
        assert row["images_per_s"] > 0 and len(row["times_s"]) == 1
        assert row["interpolation"] and row["field"] and row["calls"] and row["version"]
    assert _row(dry_run, "unetlib")["method"] == "unetlib"
    assert _row(dry_run, "unetlib")["calls"] == "one batch"
    assert _row(dry_run, "elasticdeform")["method"].startswith("elasticdeform ")


def test_parity_with_elasticdeform(dry_run):
    parity = _row(dry_run, "elasticdeform")["parity"]
    assert parity["image_max_abs_diff"] < 1e-4
    assert parity["label_fraction_differing"] == 0


def test_skipped_and_summary(dry_run):
    assert dry_run["skipped"] == sorted(OPTIONAL)
    assert set(dry_run["ratios"]) == {
        r["method"] for r in dry_run["results"] if r["peer"] != "unetlib"
    }
    assert dry_run["fastest_inexact"]["method"] == "torchvision v2.ElasticTransform"
    assert dry_run["unetlib_over_fastest_inexact"] > 0
    assert {"cpu", "cpu_count", "load_average"} <= set(dry_run["hardware"])
    assert dry_run["command"].startswith("python ")


@pytest.mark.skipif(importlib.util.find_spec("kornia") is not None, reason="kornia is installed")
def test_missing_peer_not_skipped_is_an_error_naming_it(tmp_path):
    skip = [p for p in OPTIONAL if p != "kornia"]
    with _isolated(), pytest.raises(SystemExit, match="kornia.*make bench"):
        bench.main(["--dry-run", "--skip", *skip, "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
