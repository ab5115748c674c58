"""unetlib.train: configuration, a tiny real training run, determinism, resume after a kill,
reuse, the command line, and DistributedDataParallel on 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import unetlib.train as T
from unetlib.model import load_checkpoint

TINY = dict(dataset="synthetic", image_size=64, n_train=4, n_test=2, depth=2, base_channels=4,
            padding="same", batch_norm=False, dropout=0.0, optimizer="adam", lr=3e-3, steps=4,
            batch_size=2, eval_every=2, tile=64, progress=False, seed=3)


def tiny(tmp_path, **kw) -> T.TrainConfig:
    return T.TrainConfig(**{**TINY, "out_dir": str(tmp_path / "runs"), **kw})


# ----------------------------------------------------------------------------------------------
# configuration


@pytest.mark.parametrize("field, value", [("padding", "full"), ("loss", "mse"),
                                          ("optimizer", "lbfgs"), ("up_mode", "nearest"),
                                          ("steps", 0), ("batch_size", 0), ("val_fraction", 1.0),
                                          ("augment", "elastic,warp"),
                                          ("lr_schedule", "cosine"), ("threshold", 1.0),
                                          ("threshold", 0.0)])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        T.TrainConfig(**{field: value})


@pytest.mark.parametrize("steps", [1, 10, 800])
def test_learning_rate_schedules(steps):
    const = T.TrainConfig(lr=0.1, steps=steps)
    poly = T.TrainConfig(lr=0.1, steps=steps, lr_schedule="poly")
    assert all(T.learning_rate(const, s) == 0.1 for s in range(steps))
    rates = [T.learning_rate(poly, s) for s in range(steps)]
    assert rates[0] == 0.1
    # decays, never reaching 0 within the run
    assert all(a > b > 0 for a, b in zip(rates[:-1], rates[1:], strict=True))
    assert rates[-1] == pytest.approx(0.1 * (1 / steps) ** 0.9)
    assert T.learning_rate(poly, steps) == 0.0


@pytest.mark.parametrize("spec, parts", [("all", T.AUGMENT_PARTS), ("none", ()), ("", ()),
                                         ("elastic, flip", ("elastic", "flip"))])
def test_augment_parts(spec, parts):
    assert T.augment_parts(spec) == parts


def test_key_ignores_presentation_but_not_results(tmp_path):
    a = tiny(tmp_path)
    assert a.key() == tiny(tmp_path, progress=True, out_dir="elsewhere", reuse=False).key()
    assert a.key() != tiny(tmp_path, w0=0.0).key()
    assert a.key() != tiny(tmp_path, seed=4).key()


def test_config_from_takes_known_names_only():
    cfg = T.config_from({"steps": 7, "profile": "smoke", "np": np, "lr": 0.5}, seed=9)
    assert (cfg.steps, cfg.lr, cfg.seed) == (7, 0.5, 9)


def test_missing_data_falls_back_loudly(tmp_path, capsys):
    cfg = T.with_available_data(T.TrainConfig(dataset="DIC-C2DH-HeLa",
                                              data_root=str(tmp_path / "nothing")))
    assert cfg.dataset == "synthetic"
    assert "Falling back" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# a real (tiny) run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    return tmp, T.train(tiny(tmp))


def test_tiny_run_trains_and_records_everything(tiny_run):
    tmp, r = tiny_run
    assert r["steps_done"] == 4 and [h["step"] for h in r["history"]] == [2, 4]
    for row in r["history"]:
        assert np.isfinite([row["train_loss"], row["val_loss"], row["val_f1"]]).all()
    m = r["metrics"]
    for key in ("iou", "f1", "pixel_error", "seg", "splits", "merges"):
        assert key in m and np.isfinite(m[key])
    assert 0 <= m["iou"] <= 1 and 0 <= m["seg"] <= 1
    assert len(r["per_image"]) == 2 and len(r["frames"]["test"]) == 2
    assert r["hardware"]["cpu_count"] >= 1 and r["wall_seconds"] > 0
    saved = json.loads((tmp / "runs" / r["run"] / "result.json").read_text())
    assert saved["metrics"] == pytest.approx(m)


def test_fixed_threshold_is_recorded(tiny_run):
    _, r = tiny_run
    assert r["threshold"] == {"value": 0.5, "chosen_on": "fixed"}


def test_choose_threshold_finds_the_calibration_offset():
    # cells of probability 0.3, background 0.1: only thresholds in [0.1, 0.3) find the cells
    lab = np.zeros((32, 32), np.int32)
    lab[4:12, 4:12], lab[16:28, 10:30] = 1, 2
    prob = np.where(lab > 0, 0.3, 0.1)
    t, scan = T.choose_threshold([prob, prob], [lab, lab])
    assert t == 0.25  # ties (0.10 excluded: p > t) go to the threshold nearest 0.5
    assert scan["0.25"] == pytest.approx(1.0) and scan["0.50"] == 0.0
    assert list(scan) == [f"{g:.2f}" for g in T.THRESHOLD_GRID]


def test_describe_threshold():
    config = {"threshold": 0.5}
    assert T.describe_threshold({"config": config}) == "Threshold 0.50 (fixed)."
    assert T.result_threshold({"config": config}) == 0.5
    tuned = {"config": config, "threshold": {
        "value": 0.3, "chosen_on": "validation", "val_iou": {"0.30": 0.81, "0.50": 0.7},
        "test_at_fixed": {"iou": 0.655, "seg": 0.4}}}
    assert T.result_threshold(tuned) == 0.3
    text = T.describe_threshold(tuned)
    assert text.startswith("Threshold 0.30, the best validation IoU (0.810) over 2 thresholds")
    assert "at the fixed 0.50 the test IoU would be 0.655 and SEG 0.400" in text


def test_choose_threshold_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="2 probability maps but 1 label"):
        T.choose_threshold([np.zeros((4, 4))] * 2, [np.zeros((4, 4), int)])
    with pytest.raises(ValueError, match="at least one"):
        T.choose_threshold([], [])


def test_tuned_threshold_comes_from_validation_and_keeps_the_fixed_scores(tmp_path, monkeypatch):
    seen = []
    real = T.choose_threshold

    def spy(probs, labels, grid=T.THRESHOLD_GRID):
        seen.append(len(probs))
        return real(probs, labels, grid)

    monkeypatch.setattr(T, "choose_threshold", spy)
    r = T.train(tiny(tmp_path, tune_threshold=True))
    n_val = len(r["frames"]["val"])
    assert seen == [n_val] and n_val >= 1  # validation frames only, never the test frames
    th = r["threshold"]
    assert th["chosen_on"] == "validation" and th["value"] in T.THRESHOLD_GRID
    assert max(th["val_iou"].values()) == th["val_iou"][f"{th['value']:.2f}"]
    if th["value"] != 0.5:
        assert set(th["test_at_fixed"]) >= {"iou", "seg"}
    # the tuned run is a different run from the fixed-threshold one
    assert r["run"] != tiny(tmp_path).run_name()


def test_best_checkpoint_loads_with_weights_only(tiny_run):
    _, r = tiny_run
    model, extra = load_checkpoint(r["checkpoint"])
    assert extra["step"] == r["best_step"]
    raw = torch.load(r["checkpoint"], map_location="cpu", weights_only=True)
    assert isinstance(raw, dict)
    out = model(torch.rand(1, 1, 64, 64))
    assert out.shape == (1, 2, 64, 64) and torch.isfinite(out).all()


def test_finished_run_is_reused_not_retrained(tiny_run):
    tmp, r = tiny_run
    again = T.train(tiny(tmp))
    assert again["reused"] and again["metrics"] == pytest.approx(r["metrics"])


def test_same_seed_same_device_same_metrics(tiny_run, tmp_path):
    _, r = tiny_run
    again = T.train(tiny(tmp_path, reuse=False))
    assert again["history"] == r["history"] or all(
        a == pytest.approx(b, rel=1e-6, abs=1e-9)
        for ha, hb in zip(again["history"], r["history"], strict=True)
        for a, b in ((ha[k], hb[k]) for k in ha if k != "seconds"))
    assert again["metrics"] == pytest.approx(r["metrics"], rel=1e-6, abs=1e-9)
    assert again["param_checksum"] == pytest.approx(r["param_checksum"], rel=1e-9)


def test_resume_after_a_kill_continues_exactly(tmp_path, monkeypatch):
    # the poly schedule too: its rate is a function of the restored step
    cfg = tiny(tmp_path, steps=6, eval_every=2, augment="all", reuse=False, lr_schedule="poly")
    straight = T.train(tiny(tmp_path / "straight", steps=6, eval_every=2, augment="all",
                            reuse=False, lr_schedule="poly"))
    calls = {"n": 0}
    original = T.validation_scores

    def killed_after_first_checkpoint(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second evaluation (step 4): die before its checkpoint
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(T, "validation_scores", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg)
    last = tmp_path / "runs" / cfg.run_name() / "last.pt"
    assert last.is_file() and torch.load(last, weights_only=True)["step"] == 2
    assert not list(last.parent.glob(".*tmp")), "temporary checkpoint left behind"
    monkeypatch.setattr(T, "validation_scores", original)
    resumed = T.train(cfg)
    assert resumed["steps_done"] == 6
    assert resumed["param_checksum"] == pytest.approx(straight["param_checksum"], rel=1e-9)
    assert resumed["metrics"] == pytest.approx(straight["metrics"], rel=1e-6, abs=1e-9)


def test_command_line(tmp_path, capsys):
    args = ["--dataset", "synthetic", "--image-size", "64", "--n-train", "3", "--n-test", "1",
            "--depth", "2", "--base-channels", "4", "--padding", "same", "--steps", "2",
            "--eval-every", "2", "--batch-size", "1", "--tile", "64", "--progress", "false",
            "--optimizer", "nesterov", "--lr", "0.01", "--out-dir", str(tmp_path)]
    assert T.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert np.isfinite(out["metrics"]["iou"])


def test_command_line_rejects_bad_values(capsys):
    assert T.main(["--padding", "full", "--steps", "1"]) == 1
    assert "padding" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# several processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = T.train(T.TrainConfig(**config))
    torch.distributed.destroy_process_group()
    with open(f"{out}/rank{rank}.json", "w") as fh:
        json.dump({"checksum": result["param_checksum"], "history": result["history"]}, fh)


def test_ddp_two_cpu_processes_match_one(tmp_path):
    """2 ranks on gloo, each half of every global batch: identical weights on both ranks, and
    the same losses and weights as one process training on the whole batches."""
    config = {**TINY, "augment": "none", "steps": 3, "eval_every": 3, "batch_size": 2,
              "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "out_dir": str(tmp_path / "ddp"),
              "reuse": False}
    mp.spawn(_ddp_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["checksum"] == r1["checksum"], "ranks diverged"
    single = T.train(T.TrainConfig(**{**config, "out_dir": str(tmp_path / "single")}))
    assert r0["checksum"] == pytest.approx(single["param_checksum"], rel=1e-5)
    assert r0["history"][-1]["train_loss"] == pytest.approx(
        single["history"][-1]["train_loss"], rel=1e-4)
