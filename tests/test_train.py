"""unetlib.train: a tiny real training run, determinism, resume after a kill, reuse, the
command line, and DistributedDataParallel on 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import unetlib.config as C
import unetlib.evaluate as E
import unetlib.train as T
from unetlib.instances import METHODS
from unetlib.model import load_checkpoint

TINY = dict(dataset="synthetic", image_size=64, n_train=4, n_test=2, depth=2, base_channels=4,
            padding="same", batch_norm=False, dropout=0.0, optimizer="adam", lr=3e-3, steps=4,
            batch_size=2, eval_every=2, input_tile=64, progress=False, seed=3)


def tiny(tmp_path, **kw) -> T.TrainConfig:
    return T.TrainConfig(**{**TINY, "out_dir": str(tmp_path / "runs"), **kw})


# ----------------------------------------------------------------------------------------------
# configuration


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


def test_missing_data_falls_back_loudly_only_when_allowed(tmp_path, capsys):
    absent = T.TrainConfig(dataset="DIC-C2DH-HeLa", data_root=str(tmp_path / "nothing"))
    cfg = C.with_available_data(absent, allow_synthetic=True)
    assert cfg.dataset == "synthetic" and cfg.extra["requested_dataset"] == "DIC-C2DH-HeLa"
    assert "SYNTHETIC" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="DIC-C2DH-HeLa"):
        C.with_available_data(absent)


def test_misspelt_data_set_is_an_error_not_a_synthetic_run(tmp_path):
    typo = T.TrainConfig(dataset="isbi2021", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown data set 'isbi2021'.*known: isbi2012"):
        C.with_available_data(typo, allow_synthetic=True)


def test_corrupt_frame_is_an_error_not_a_synthetic_run(tmp_path):
    from PIL import Image

    base = tmp_path / "DIC-C2DH-HeLa"
    for seq in ("01", "02"):
        (base / seq).mkdir(parents=True)
        (base / f"{seq}_GT" / "SEG").mkdir(parents=True)
        Image.fromarray(np.ones((8, 8), np.uint16)).save(base / f"{seq}_GT/SEG/man_seg000.tif")
        (base / seq / "t000.tif").write_bytes(b"II*\x00 not a tiff")
    broken = T.TrainConfig(dataset="DIC-C2DH-HeLa", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="t000.tif: no image data"):
        C.with_available_data(broken, allow_synthetic=True)


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


def test_fixed_instance_parameters_are_recorded(tiny_run):
    _, r = tiny_run
    assert r["threshold"] == {"value": 0.5, "chosen_on": "fixed"}
    inst = r["instances"]
    assert inst["components"]["params"] == {"method": "components", "threshold": 0.5,
                                            "min_size": 64}
    assert inst["watershed"]["params"]["seed_threshold"] == 0.9
    assert inst["components"]["metrics"] == r["metrics"]
    assert E.result_threshold(r) == 0.5
    assert "Paper's way" in E.describe_instances(r) and "Beyond the paper" in \
        E.describe_instances(r)


def test_instance_parameters_come_from_validation_seg_only(tmp_path, monkeypatch):
    import unetlib.instances as I

    seen = []
    real = I.choose_instances

    def spy(probs, labels, method="components", grid=None):
        seen.append((method, len(probs), [lab.shape for lab in labels]))
        return real(probs, labels, method, grid)

    monkeypatch.setattr(E, "choose_instances", spy)
    r = T.train(tiny(tmp_path, tune_threshold=True))
    n_val = len(r["frames"]["val"])
    # validation frames only, never the test frames, once per method
    assert [(m, n) for m, n, _ in seen] == [(m, n_val) for m in I.METHODS]
    for method in I.METHODS:
        rec = r["instances"][method]
        assert rec["chosen_on"] == "validation"
        best = max(row["seg"] for row in rec["scan"])
        assert rec["val_seg"] == best
        chosen = [row for row in rec["scan"] if all(row[k] == v for k, v in
                                                     rec["params"].items())]
        assert chosen and chosen[0]["seg"] == best
    assert r["threshold"]["value"] == r["instances"]["components"]["params"]["threshold"]
    # the paper's way at the fixed threshold stays on record
    assert set(r["instances"]["fixed"]["metrics"]) >= {"iou", "seg"}
    assert r["run"] != tiny(tmp_path).run_name()


@pytest.mark.parametrize("kw", [{}, {"ema": 0.5, "batch_norm": True},
                                {"channels_last": True, "batch_norm": True, "steps": 6}])
def test_final_evaluation_reuses_the_best_validations_probabilities_exactly(tmp_path,
                                                                            monkeypatch, kw):
    seen = {}
    real = T.evaluate_model

    def spy(model, config, val_images, val_labels, test_images, test_labels, val_probs=None):
        seen.update(model=model, config=config, val_images=val_images, val_probs=val_probs)
        return real(model, config, val_images, val_labels, test_images, test_labels,
                    val_probs=val_probs)

    monkeypatch.setattr(T, "evaluate_model", spy)
    r = T.train(tiny(tmp_path, tune_threshold=True, **kw))
    kept = seen["val_probs"]
    assert kept is not None and len(kept) == len(r["frames"]["val"])
    # the restored best weights predict the very same arrays again
    again = E.predict_frames(seen["model"], seen["val_images"], seen["config"])
    assert all(np.array_equal(a, b) for a, b in zip(kept, again, strict=True))


def test_evaluation_predicts_validation_frames_only_without_their_probabilities(monkeypatch):
    predicted = []
    monkeypatch.setattr(E, "predict_frames", lambda model, images, config: (
        predicted.append(len(images)) or [np.full((8, 8), 0.9, np.float32) for _ in images]))
    config = T.TrainConfig(**{**TINY, "tune_threshold": False})
    frames, labels = [np.zeros((8, 8))] * 2, [np.ones((8, 8), np.int32)] * 2
    E.evaluate_model(None, config, frames, labels, frames[:1], labels[:1])
    assert predicted == [2, 1]
    predicted.clear()
    E.evaluate_model(None, config, frames, labels, frames[:1], labels[:1],
                     val_probs=[np.full((8, 8), 0.9, np.float32)] * 2)
    assert predicted == [1]  # the test frame only
    with pytest.raises(ValueError, match="val_probs has 1 maps for 2 validation frames"):
        E.evaluate_model(None, config, frames, labels, frames[:1], labels[:1],
                         val_probs=[np.zeros((8, 8), np.float32)])


def test_select_by_val_seg_keeps_the_checkpoint_with_the_best_validation_seg(tmp_path):
    r = T.train(tiny(tmp_path, select_by="val_seg", steps=6, eval_every=2, tune_threshold=True))
    rows = r["history"]
    for row in rows:
        assert row["val_seg"] == max(row[f"val_seg_{m}"] for m in METHODS)
    best = max(rows, key=lambda row: (row["val_seg"], -row["step"]))  # first of the best
    assert r["best_step"] == best["step"]
    # the restored weights score that validation SEG again at the end
    chosen = max(r["instances"][m]["val_seg"] for m in METHODS)
    assert chosen == pytest.approx(best["val_seg"])


def test_ema_validates_and_keeps_the_averaged_weights(tmp_path):
    plain = T.train(tiny(tmp_path, steps=4, eval_every=2))
    averaged = T.train(tiny(tmp_path, steps=4, eval_every=2, ema=0.5))
    # the same training (same seed): the raw weights agree, what is validated differs
    assert averaged["param_checksum"] == pytest.approx(plain["param_checksum"], rel=1e-9)
    assert averaged["history"][-1]["val_loss"] != plain["history"][-1]["val_loss"]
    model, _ = load_checkpoint(averaged["checkpoint"])
    raw = float(sum(p.detach().double().sum() for p in model.parameters()))
    assert raw != pytest.approx(averaged["param_checksum"], rel=1e-9)


def test_kept_checkpoints_give_the_budget_curve(tmp_path):
    r = T.train(tiny(tmp_path, keep_checkpoints=True, steps=4, eval_every=2))
    folder = tmp_path / "runs" / r["run"] / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.pt")) == ["step000002.pt", "step000004.pt"]
    rows = E.checkpoint_curve(r)
    assert [row["step"] for row in rows] == [2, 4]
    for row in rows:
        for method in ("components", "watershed", "fixed"):
            assert 0 <= row[method]["seg"] <= 1 and 0 <= row[method]["iou"] <= 1
    # the last checkpoint's scores are the final run's when the best step is the last
    if r["best_step"] == 4:
        assert rows[-1]["components"]["seg"] == pytest.approx(r["metrics"]["seg"])
    # keeping checkpoints does not change what the run is
    assert r["run"] == tiny(tmp_path).run_name()


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


def test_result_scored_before_an_instance_method_existed_is_rescored_not_retrained(tmp_path):
    first = T.train(tiny(tmp_path))
    path = tmp_path / "runs" / first["run"] / "result.json"
    old = json.loads(path.read_text())
    del old["instances"]["distance"]  # as written before the distance watershed existed
    path.write_text(json.dumps(old))
    again = T.train(tiny(tmp_path))
    assert again["reused"] and again["history"] == first["history"]  # not retrained
    new, before = again["instances"]["distance"], first["instances"]["distance"]
    assert new["params"] == before["params"]
    assert new["metrics"] == pytest.approx(before["metrics"])
    assert again["metrics"] == pytest.approx(first["metrics"])
    assert again["rescored"]["methods"] == list(T.METHODS)
    saved = json.loads(path.read_text())  # the file now has every method, and no reuse flag
    assert "distance" in saved["instances"] and "reused" not in saved


def test_result_chosen_on_an_older_grid_is_rescored_not_retrained(tmp_path):
    """A grid that grew (a setting added to instances.GRIDS) makes a saved choice stale: the run
    is scored again over today's grid from its kept weights, not retrained, and not left as it
    was (its choice would then come from a grid the code no longer has)."""
    first = T.train(tiny(tmp_path, tune_threshold=True))
    assert first["instances"]["distance"]["chosen_on"] == "validation"
    path = tmp_path / "runs" / first["run"] / "result.json"
    old = json.loads(path.read_text())
    old["instances"]["distance"]["scan"] = old["instances"]["distance"]["scan"][:-1]
    path.write_text(json.dumps(old))
    again = T.train(tiny(tmp_path, tune_threshold=True))
    assert again["reused"] and again["history"] == first["history"]  # not retrained
    assert again["instances"]["distance"]["scan"] == first["instances"]["distance"]["scan"]
    assert "rescored" in again and "rescored" not in first


def test_run_made_before_an_option_existed_is_reused_and_found_from_anywhere(tmp_path,
                                                                           monkeypatch):
    """A result whose record lacks an option added since (at its default) is the same run, not
    retrained; its checkpoint is given under the out_dir it is reused from, whatever the
    working directory of the process that trained it."""
    first = T.train(tiny(tmp_path))
    path = tmp_path / "runs" / first["run"] / "result.json"
    old = json.loads(path.read_text())
    for name in ("elastic_field", "elastic_alpha", "elastic_smooth", "channels_last", "amp_cpu"):
        del old["config"][name]  # as written before these options existed
    old["checkpoint"] = "elsewhere/runs/best.pt"  # as a trainer in another folder saw it
    path.write_text(json.dumps(old))
    before = path.stat().st_mtime_ns
    again = T.train(tiny(tmp_path))
    assert again["reused"] and again["history"] == first["history"]
    assert path.stat().st_mtime_ns == before  # nothing rewritten
    assert again["checkpoint"] == str(tmp_path / "runs" / first["run"] / "best.pt")
    monkeypatch.chdir(tmp_path)  # reused from another working directory, by a relative out_dir
    third = T.train(tiny(tmp_path, out_dir="runs"))
    assert third["reused"] and Path(third["checkpoint"]) == Path("runs") / first["run"] / "best.pt"
    assert Path(third["checkpoint"]).is_file()
    # an option that differs from its default is another run
    old["config"]["w0"] = 3.0
    path.write_text(json.dumps(old))
    assert not T.train(tiny(tmp_path))["reused"]


def test_batch_f1_by_comparison_equals_argmax_ties_included():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 17, 19, generator=g).round()  # rounded: many exact ties
    target = torch.randint(0, 2, (3, 21, 23), generator=g)  # larger: a valid network's crop
    pred = logits.argmax(1)
    tgt = target[:, 2:19, 2:21]
    tp = ((pred == 1) & (tgt == 1)).sum().item()
    expected = 2 * tp / ((pred == 1).sum().item() + (tgt == 1).sum().item())
    assert (logits[:, 0] == logits[:, 1]).any()
    assert T._batch_f1(logits, target) == expected
    three = torch.randn(2, 3, 8, 8, generator=g)  # other class counts keep the argmax
    assert 0.0 <= T._batch_f1(three, torch.randint(0, 3, (2, 8, 8), generator=g)) <= 1.0


@pytest.mark.parametrize("amp, amp_cpu, device, enabled", [
    (True, False, "cpu", False), (True, True, "cpu", True), (False, True, "cpu", True),
    (False, False, "cpu", False), (True, False, "cuda", True), (False, True, "cuda", False),
])
def test_training_autocast_follows_amp_on_cuda_and_amp_cpu_on_the_cpu(amp, amp_cpu, device,
                                                                       enabled):
    config = T.TrainConfig(amp=amp, amp_cpu=amp_cpu)
    assert T.bf16_training(config, torch.device(device)) is enabled
    if device == "cpu":  # an autocast for CUDA switches itself off on a machine without one
        ac = T.training_autocast(config, torch.device(device))
        assert ac._enabled is enabled and ac.fast_dtype == torch.bfloat16


def test_fast_step_changes_only_the_rounding(tmp_path):
    """channels_last keeps the arithmetic of the step up to the order of sums; bf16 autocast
    rounds the forward pass to 8 bits of mantissa: the first losses agree accordingly, the
    weights are kept channels-last, and the kept checkpoint loads into a plain model."""
    losses = {}
    for name, kw in {"fp32": {}, "cl": {"channels_last": True},
                     "bf16": {"channels_last": True, "amp_cpu": True}}.items():
        r = T.train(tiny(tmp_path / name, batch_norm=True, augment="all", reuse=False,
                         steps=2, eval_every=2, **kw))
        losses[name] = r["history"][0]["train_loss"]
        assert all(np.isfinite(v) for v in r["metrics"].values() if isinstance(v, float))
        model, _ = load_checkpoint(r["checkpoint"], map_location="cpu")
        assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    assert losses["cl"] == pytest.approx(losses["fp32"], rel=1e-4)
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=3e-2)
    config = tiny(tmp_path, channels_last=True)
    frames = T.prepare_frames(T.load_splits(config)[0], config, torch.device("cpu"))
    run = T._build_run(config, 0, 1, torch.device("cpu"), tmp_path, frames, None)
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_reused_result_without_its_weights_is_recomputed(tmp_path):
    first = T.train(tiny(tmp_path))
    (tmp_path / "runs" / first["run"] / "best.pt").unlink()
    again = T.train(tiny(tmp_path))
    assert not again["reused"] and (tmp_path / "runs" / first["run"] / "best.pt").is_file()


def test_same_seed_same_device_same_metrics(tiny_run, tmp_path):
    _, r = tiny_run
    again = T.train(tiny(tmp_path, reuse=False))
    assert again["history"] == r["history"] or all(
        a == pytest.approx(b, rel=1e-6, abs=1e-9)
        for ha, hb in zip(again["history"], r["history"], strict=True)
        for a, b in ((ha[k], hb[k]) for k in ha if k != "seconds"))
    assert again["metrics"] == pytest.approx(r["metrics"], rel=1e-6, abs=1e-9)
    assert again["param_checksum"] == pytest.approx(r["param_checksum"], rel=1e-9)


def _kill_at_evaluation(monkeypatch, n: int) -> None:
    """Make the ``n``-th evaluation raise KeyboardInterrupt before its checkpoint is written."""
    calls = {"n": 0}
    original = T.validation_scores

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(T, "validation_scores", killed)


@pytest.mark.parametrize("kw, kill_at", [
    # the poly schedule too: its rate is a function of the restored step
    ({"steps": 6, "eval_every": 2, "lr_schedule": "poly"}, 2),
    # early stopping: the patience counter and the best score come back from last.pt
    ({"steps": 6, "eval_every": 2, "ema": 0.9}, 2),  # the weight average comes back too
    # the fast step: channels-last weights and optimiser state, bf16 autocast on the CPU
    ({"steps": 6, "eval_every": 2, "channels_last": True, "amp_cpu": True,
      "batch_norm": True}, 2),
    ({"steps": 12, "eval_every": 1, "patience": 1, "lr": 0.05}, 3),  # stops early at step 11
    ({"steps": 12, "eval_every": 1, "patience": 1, "lr": 0.05}, 11),
    ({"steps": 12, "eval_every": 1, "patience": 2, "lr": 0.05}, 5),
])
def test_resume_after_a_kill_continues_exactly(tmp_path, monkeypatch, kw, kill_at):
    cfg = tiny(tmp_path, augment="all", reuse=False, **kw)
    straight = T.train(tiny(tmp_path / "straight", augment="all", reuse=False, **kw))
    _kill_at_evaluation(monkeypatch, kill_at)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg)
    last = tmp_path / "runs" / cfg.run_name() / "last.pt"
    if straight["steps_done"] > (kill_at - 1) * cfg.eval_every:
        assert last.is_file()
        assert torch.load(last, weights_only=True)["step"] == (kill_at - 1) * cfg.eval_every
    assert not list(last.parent.glob(".*tmp")), "temporary checkpoint left behind"
    monkeypatch.undo()
    resumed = T.train(cfg)
    for key in ("steps_done", "best_step", "stopped_early"):
        assert resumed[key] == straight[key], key
    assert resumed["param_checksum"] == pytest.approx(straight["param_checksum"], rel=1e-9)
    assert resumed["metrics"] == pytest.approx(straight["metrics"], rel=1e-6, abs=1e-9)


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("kw", [
    {},
    # the weight average, BatchNorm's statistics, dropout's draws and channels-last memory
    {"ema": 0.9, "batch_norm": True, "dropout": 0.5, "channels_last": True},
    # early stopping's counter and best score carry over (patience 3 never fires here)
    {"patience": 3, "lr": 0.05},
])
def test_longer_run_continues_a_shorter_one_exactly(tmp_path, monkeypatch, kw):
    kw = {"augment": "all", "eval_every": 2, **kw}
    straight = T.train(tiny(tmp_path / "straight", steps=8, **kw))
    short = T.train(tiny(tmp_path, steps=4, **kw))
    assert short["extended_from"] is None
    steps_run = []
    original = T._train_step
    monkeypatch.setattr(T, "_train_step",
                        lambda run, step, *a: steps_run.append(step) or original(run, step, *a))
    longer = T.train(tiny(tmp_path, steps=8, **kw))
    assert longer["extended_from"] == {"run": short["run"], "step": 4}
    assert steps_run == [4, 5, 6, 7], "the shorter run's steps were repeated"
    assert longer["run"] == straight["run"] != short["run"]
    assert _without_seconds(longer["history"]) == _without_seconds(straight["history"])
    assert longer["param_checksum"] == straight["param_checksum"]
    for key in ("best_step", "steps_done", "metrics", "instances"):
        assert longer[key] == straight[key], key
    assert longer["train_seconds"] >= short["train_seconds"]


@pytest.mark.parametrize("short_kw, long_kw, why", [
    ({"steps": 4, "lr_schedule": "poly"}, {"steps": 8, "lr_schedule": "poly"},
     "poly's rates depend on the total steps"),
    ({"steps": 3}, {"steps": 8}, "the shorter run validated at step 3, a straight run would not"),
    ({"steps": 4, "lr": 0.01}, {"steps": 8}, "another option"),
    ({"steps": 4}, {"steps": 8, "keep_checkpoints": True}, "the budget curve's checkpoints"),
])
def test_run_that_cannot_be_continued_trains_from_the_start(tmp_path, short_kw, long_kw, why):
    T.train(tiny(tmp_path, eval_every=2, **short_kw))
    longer = T.train(tiny(tmp_path, eval_every=2, **long_kw))
    assert longer["extended_from"] is None, why
    assert longer["history"][0]["step"] == 2


def test_longer_run_continues_the_longest_shorter_one_that_ran_to_its_end(tmp_path):
    for steps in (2, 4):
        T.train(tiny(tmp_path, steps=steps))
    longer = tiny(tmp_path, steps=8)
    assert T.extendable_run(longer).name == tiny(tmp_path, steps=4).run_name()
    # a run that stopped early is never continued: a straight run would have stopped too
    result = tmp_path / "runs" / tiny(tmp_path, steps=4).run_name() / "result.json"
    record = json.loads(result.read_text())
    result.write_text(json.dumps({**record, "stopped_early": True, "stopped_by": "patience"}))
    assert T.extendable_run(longer).name == tiny(tmp_path, steps=2).run_name()
    assert T.train(longer)["extended_from"]["step"] == 2
    assert T.train(tiny(tmp_path, steps=10, resume=False))["extended_from"] is None
    # a last.pt that is not the finished run's end (marked stopped since): trained from the start
    last = tmp_path / "runs" / tiny(tmp_path, steps=2).run_name() / "last.pt"
    torch.save({**torch.load(last, weights_only=True), "stopped": True}, last)
    assert T.train(tiny(tmp_path, steps=6))["extended_from"] is None


def test_time_limit_evaluates_once_more_and_stops(tmp_path):
    # any positive limit is spent by the first step: the run stops there, after an evaluation
    res = T.train(tiny(tmp_path, steps=8, eval_every=4, time_limit=1e-9, reuse=False))
    assert res["steps_done"] == 1 and res["stopped_early"] and res["stopped_by"] == "time_limit"
    assert [row["step"] for row in res["history"]] == [1]
    free = T.train(tiny(tmp_path, steps=8, eval_every=4, reuse=False))
    assert free["steps_done"] == 8 and free["stopped_by"] is None
    # a limited run is another run; an unlimited one keeps the key it had before the option
    assert tiny(tmp_path, time_limit=60.0).key() != tiny(tmp_path).key()


def test_truncated_checkpoint_names_itself_and_the_way_out(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, steps=6, eval_every=2, reuse=False)
    _kill_at_evaluation(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg)
    monkeypatch.undo()
    last = tmp_path / "runs" / cfg.run_name() / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ValueError, match="last.pt: unreadable checkpoint.*resume"):
        T.train(cfg)
    assert T.train(tiny(tmp_path, steps=6, eval_every=2, reuse=False, resume=False))


def test_command_line(tmp_path, capsys):
    args = ["--dataset", "synthetic", "--image-size", "64", "--n-train", "3", "--n-test", "1",
            "--depth", "2", "--base-channels", "4", "--padding", "same", "--steps", "2",
            "--eval-every", "2", "--batch-size", "1", "--input-tile", "64", "--progress",
            "false", "--optimizer", "nesterov", "--lr", "0.01", "--out-dir", str(tmp_path)]
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


def _hela() -> bool:
    from unetlib.paths import data_root

    return (data_root() / "DIC-C2DH-HeLa" / "01_ST" / "SEG").is_dir()


@pytest.mark.skipif(not _hela(), reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_silver_truth_trains_on_silver_but_validates_and_tests_on_gold():
    gold_train, gold_val, gold_test = T.load_splits(T.TrainConfig(dataset="DIC-C2DH-HeLa"))
    train, val, test = T.load_splits(T.TrainConfig(dataset="DIC-C2DH-HeLa", truth="silver"))
    assert [s.name for s in val] == [s.name for s in gold_val]  # the same gold frames
    assert [s.name for s in test] == [s.name for s in gold_test]
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(val, gold_val, strict=True))
    names = {s.name for s in train}
    assert len(train) > 10 * len(gold_train)
    assert not names & {s.name for s in val}  # validation time points are not trained on
    assert all(s.name.split("/")[1] == "01" for s in train)  # sequence 02 stays the test


@pytest.mark.skipif(not _hela(), reason="DIC-C2DH-HeLa not found (../shared/data)")
@pytest.mark.parametrize("options", [{}, {"silver_val": 8}, {"truth": "silver", "silver_gap": 2}])
def test_the_seed_picks_no_frame(options):
    """Runs of one configuration that differ only in their seed see the same frames, so a study
    over seeds (studies/seg_breakdown.py, studies/ensemble.py) loads them once."""
    splits = [T.load_splits(T.TrainConfig(dataset="DIC-C2DH-HeLa", seed=seed, **options))
              for seed in (0, 7)]
    for a, b in zip(*splits, strict=True):
        assert [s.name for s in a] == [s.name for s in b]
        assert all(np.array_equal(x.labels, y.labels) for x, y in zip(a, b, strict=True))


def test_the_zoom_option_reaches_the_augmentation(tmp_path):
    assert T._augmenter(tiny(tmp_path, max_scale=0.4)).max_scale == 0.4
    assert T._augmenter(tiny(tmp_path)).max_scale == 0.0


def test_train_seeds_runs_consecutive_seeds(tmp_path):
    runs = T.train_seeds(tiny(tmp_path, steps=2, eval_every=2), 2)
    assert list(runs) == [3, 4] and [r["config"]["seed"] for r in runs.values()] == [3, 4]
    assert runs[3]["run"] == tiny(tmp_path, steps=2, eval_every=2).run_name()
    with pytest.raises(ValueError, match="n_seeds"):
        T.train_seeds(tiny(tmp_path), 0)


def test_silver_validation_frames_are_spare_time_points_of_the_training_sequence():
    from unetlib.paths import data_root

    if not (data_root() / "DIC-C2DH-HeLa").is_dir():
        pytest.skip("DIC-C2DH-HeLa not found (../shared/data)")
    gold = T.load_splits(T.TrainConfig(dataset="DIC-C2DH-HeLa"))
    train, val, test = T.load_splits(T.TrainConfig(dataset="DIC-C2DH-HeLa", silver_val=4))
    assert [s.name for s in train] == [s.name for s in gold[0]]  # training unchanged
    assert [s.name for s in test] == [s.name for s in gold[2]]
    names = [s.name for s in val]
    assert names[:len(gold[1])] == [s.name for s in gold[1]] and len(names) == len(gold[1]) + 4
    assert len(set(names)) == len(names) and not set(names) & {s.name for s in train}
    assert all("/01/" in n for n in names)
    with pytest.raises(ValueError, match="silver_val=500.*only"):
        T.load_splits(T.TrainConfig(dataset="DIC-C2DH-HeLa", silver_val=500))


@pytest.mark.parametrize("kw, match", [({"dataset": "synthetic"}, "no silver truth"),
                                       ({"truth": "silver"}, "silver_val adds")])
def test_silver_validation_is_refused_where_it_cannot_be(kw, match):
    with pytest.raises(ValueError, match=match):
        T.load_splits(T.TrainConfig(**{"dataset": "DIC-C2DH-HeLa", "silver_val": 2, **kw}))




@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_it_trains_as_asked_and_says_it_is_slow(tmp_path, monkeypatch,
                                                                       capsys, native):
    import unetlib.provenance as P

    monkeypatch.setattr(P, "cpu_bf16", lambda: native)
    result = T.train(tiny(tmp_path, steps=2, amp_cpu=True, device="cpu"))
    assert result["config"]["amp_cpu"] is True  # what was asked is what ran, and is recorded
    said = "warning: amp_cpu=True on a CPU without native bf16" in capsys.readouterr().err
    assert said is not native


@pytest.mark.parametrize("gap", [0, 1, 5])
def test_silver_gap_leaves_the_validation_frames_neighbours_out_of_training(gap):
    from unetlib.data.ctc import time_point
    from unetlib.paths import data_root

    if not (data_root() / "DIC-C2DH-HeLa").is_dir():
        pytest.skip("DIC-C2DH-HeLa not found (../shared/data)")
    plain = T.load_splits(T.TrainConfig(dataset="DIC-C2DH-HeLa", truth="silver"))
    train, val, test = T.load_splits(T.TrainConfig(dataset="DIC-C2DH-HeLa", truth="silver",
                                                   silver_gap=gap))
    assert [s.name for s in val] == [s.name for s in plain[1]]  # validation and test unchanged
    assert [s.name for s in test] == [s.name for s in plain[2]]
    val_t = [time_point(s.name) for s in val]
    dropped = [s.name for s in plain[0] if s.name not in {t.name for t in train}]
    # exactly the training time points within gap frames of a validation frame are dropped
    assert sorted(dropped) == sorted(
        s.name for s in plain[0]
        if any(seq == time_point(s.name)[0] and abs(t - time_point(s.name)[1]) <= gap
               for seq, t in val_t))
    assert (len(dropped) > 2 * gap - 2) if gap else not dropped


def test_silver_gap_is_refused_on_gold_training_and_kept_out_of_old_keys(tmp_path):
    with pytest.raises(ValueError, match="silver_gap leaves"):
        T.TrainConfig(dataset="DIC-C2DH-HeLa", silver_gap=2)
    with pytest.raises(ValueError, match="silver_gap must be >= 0"):
        T.TrainConfig(dataset="DIC-C2DH-HeLa", truth="silver", silver_gap=-1)
    base = T.TrainConfig(dataset="DIC-C2DH-HeLa", truth="silver")
    assert base.key() == T.TrainConfig(dataset="DIC-C2DH-HeLa", truth="silver", silver_gap=0).key()
    assert base.key() != T.TrainConfig(dataset="DIC-C2DH-HeLa", truth="silver", silver_gap=1).key()
