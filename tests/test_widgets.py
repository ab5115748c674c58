"""Tests for unetlib.widgets: drive each explorer from code and check what it shows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetlib import widgets as W
from unetlib.data import load_dataset
from unetlib.elastic import deform_grid
from unetlib.metrics import seg_measure, split_merge_counts, split_merge_ids
from unetlib.weights import separate_touching, weight_map

SIZE = 96


@pytest.fixture(scope="module")
def samples():
    return list(load_dataset("synthetic", "test", n=2, size=SIZE))


def two_cells(touching: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A 40 x 60 image with two rectangular cells, touching or 3 px apart."""
    labels = np.zeros((40, 60), np.int32)
    labels[10:30, 8:30] = 1
    labels[10:30, 30 if touching else 33 : 52] = 2
    image = (0.2 + 0.6 * (labels > 0)).astype(np.float32)
    return image, labels


def jpeg(b: bytes) -> bool:
    return b[:3] == b"\xff\xd8\xff"


# ---------------------------------------------------------------------------------- augmentation


def test_augmentation_sigma_zero_is_identity(samples):
    w = W.augmentation_explorer(samples)
    assert w.state["max_displacement"] > 1.0  # the paper's sigma 10 deforms
    w.set(sigma=0.0)
    np.testing.assert_allclose(w.arrays["after"], w.arrays["before"], atol=1e-5)
    np.testing.assert_array_equal(w.arrays["labels_after"], w.arrays["labels_before"])
    assert w.state["max_displacement"] == 0.0
    assert w.state["changed_fraction"] == 0.0


@pytest.mark.parametrize("points", [2, 3, 5])
def test_augmentation_matches_elastic_deform_grid(samples, points):
    """Pure elastic case: the same field and spline as unetlib.elastic.deform_grid (mirror)."""
    image, labels = samples[0].image, samples[0].labels
    noise = np.random.default_rng(points).standard_normal((2, points, points))
    out = W.augment_arrays(image, labels, noise, sigma=6.0)
    disp = torch.from_numpy(noise * 6.0)
    ref_img, ref_lab = deform_grid([torch.from_numpy(image), torch.from_numpy(labels)], disp,
                                   order=[3, 0], mode="mirror")
    inside = np.all((out["coords"] >= 0) & (out["coords"] <= SIZE - 1), axis=0)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out["image"][inside], ref_img.numpy()[inside], atol=1e-4)
    assert np.mean(out["labels"][inside] == ref_lab.numpy()[inside]) > 0.999


def test_augmentation_rotation_and_shift_are_exact(samples):
    image, labels = samples[0].image, samples[0].labels
    noise = np.zeros((2, 3, 3))
    rot = W.augment_arrays(image, labels, noise, sigma=0.0, rotation=90.0)
    np.testing.assert_allclose(rot["image"], np.rot90(image, -1), atol=1e-5)
    np.testing.assert_array_equal(rot["labels"], np.rot90(labels, -1))
    sh = W.augment_arrays(image, labels, noise, sigma=0.0, shift=(5.0, -3.0))
    np.testing.assert_allclose(sh["image"][:-5, 3:], image[5:, :-3], atol=1e-5)
    np.testing.assert_array_equal(sh["labels"][:-5, 3:], labels[5:, :-3])


def test_augmentation_gray_values(samples):
    image = samples[0].image
    out = W.augment_arrays(image, None, np.zeros((2, 3, 3)), sigma=0.0, brightness=0.1)
    np.testing.assert_allclose(out["image"], image + 0.1, atol=1e-5)
    out = W.augment_arrays(image, None, np.zeros((2, 3, 3)), sigma=0.0, contrast=0.5)
    np.testing.assert_allclose(out["image"].std(), 0.5 * image.std(), rtol=1e-4)
    out = W.augment_arrays(image, None, np.zeros((2, 3, 3)), sigma=0.0, gamma=2.0)
    lo, hi = image.min(), image.max()
    np.testing.assert_allclose(out["image"], ((image - lo) / (hi - lo)) ** 2 * (hi - lo) + lo,
                               atol=1e-5)
    assert "labels" not in out


def test_augmentation_reseed_changes_the_deformation(samples):
    w = W.augmentation_explorer(samples, seed=3)
    field, picture, seed = w.arrays["field"].copy(), w.image.value, w.state["seed"]
    w.controls["reseed"].click()
    assert w.state["seed"] == seed + 1
    assert not np.allclose(w.arrays["field"], field)
    assert w.image.value != picture
    # the same seed gives the same deformation
    again = W.augmentation_explorer(samples, seed=3)
    np.testing.assert_array_equal(again.arrays["field"], field)


@pytest.mark.parametrize("control, value", [
    ("sigma", 20.0), ("points", 5), ("rotation", 30.0), ("shift_y", 10.0), ("shift_x", -7.0),
    ("gamma", 1.5), ("contrast", 0.6), ("brightness", 0.2), ("index", 1),
])
def test_augmentation_every_control_changes_the_picture(samples, control, value):
    w = W.augmentation_explorer(samples)
    before = (w.image.value, w.arrays["after"].copy())
    w.controls[control].value = value
    assert jpeg(w.image.value)
    assert w.image.value != before[0]
    assert w.state[control] == value
    assert w.rgb.shape == (SIZE, 2 * SIZE + 6, 3)
    assert not np.array_equal(w.arrays["after"], before[1])


# ---------------------------------------------------------------------------------- weight map


@pytest.mark.parametrize("w0, sigma", [(10.0, 5.0), (3.0, 2.0), (25.0, 9.0)])
def test_weight_map_equals_unetlib_weights(samples, w0, sigma):
    w = W.weight_map_explorer(samples)
    w.set(w0=w0, sigma=sigma)
    ref = weight_map(samples[0].labels, w0=w0, sigma=sigma)
    np.testing.assert_allclose(w.arrays["weight"], ref, atol=1e-5)
    np.testing.assert_allclose(w.arrays["class_weights"] + w.arrays["border"], ref, atol=1e-5)
    assert w.state["border_max"] <= w0


def test_weight_map_w0_zero_gives_class_weights_only(samples):
    w = W.weight_map_explorer(samples)
    assert w.state["border_max"] > 0
    w.controls["w0"].value = 0.0
    np.testing.assert_array_equal(w.arrays["weight"], w.arrays["class_weights"])
    assert not w.arrays["border"].any()
    # balanced class weights: each class carries half the total weight
    target = separate_touching(samples[0].labels) > 0
    wc = w.arrays["class_weights"]
    np.testing.assert_allclose(wc[target].sum(), wc[~target].sum(), rtol=1e-5)


def test_weight_map_line_crosses_the_gap():
    image, labels = two_cells(touching=False)
    w = W.weight_map_explorer([(image, labels)])
    row = w.state["row"]
    assert 10 <= row < 30  # a row through both cells, i.e. across the gap
    line = w.arrays["line"]
    np.testing.assert_array_equal(line, w.arrays["weight"][row])
    assert line[30:33].min() > line[:5].max() + 5  # the gap between the cells is heavy
    w.set(sigma=1.0)
    narrow = w.arrays["line"][30:33].max()
    w.set(sigma=10.0)
    assert w.arrays["line"][30:33].max() > narrow  # larger sigma: more weight in the gap


def test_weight_map_controls_change_the_picture(samples):
    w = W.weight_map_explorer(samples)
    seen = {w.image.value}
    for name, value in [("w0", 20.0), ("sigma", 8.0), ("row", 5), ("index", 1)]:
        w.controls[name].value = value
        assert jpeg(w.image.value) and w.image.value not in seen
        seen.add(w.image.value)
    # a frame change moves the line to that frame's heaviest row, set() can override it
    w.set(index=0, row=7)
    assert w.state["row"] == 7 and w.state["index"] == 0


# ---------------------------------------------------------------------------------- prediction


def noisy_probabilities(samples, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in samples:
        p = 0.15 + 0.7 * (separate_touching(s.labels) > 0) + rng.normal(0, 0.05, s.labels.shape)
        out.append(np.clip(p, 0.01, 0.99).astype(np.float32))
    return out


def test_prediction_threshold_extremes(samples):
    w = W.prediction_explorer(noisy_probabilities(samples), samples)
    fg = samples[0].labels > 0
    w.set(threshold=0.0)
    assert w.arrays["pred_labels"].all()
    assert w.state["iou"] == pytest.approx(fg.mean())
    assert w.state["n_pred"] == 1 and w.state["merges"] == 1
    w.set(threshold=1.0)
    assert not w.arrays["pred_labels"].any()
    assert w.state["iou"] == 0.0 and w.state["seg"] == 0.0
    assert w.state["missed"] == w.state["n_gt"]
    w.set(threshold=0.5)
    assert w.state["iou"] > 0.8 and w.state["seg"] > 0.5


def test_threshold_scores_are_the_explorers_own_and_leave_its_controls_as_they_were(samples):
    w = W.prediction_explorer(noisy_probabilities(samples), samples, min_size=5)
    w.set(index=1, threshold=0.4)
    rows = W.threshold_scores(w, (0.0, 0.5, 1.0))
    assert len(rows) == 3 * len(samples)
    assert [r["threshold"] for r in rows[:3]] == [0.0, 0.5, 1.0]
    assert rows[0]["n_pred"] == 1 and rows[2]["iou"] == 0.0  # everything cell, then nothing
    w.set(index=0, threshold=0.5)
    assert {k: w.state[k] for k in W.SCORES} == {k: rows[1][k] for k in W.SCORES}
    assert rows[1]["image"] == w.controls["index"].options[0][0]
    # drove it, then put it back: same controls, same picture
    w.set(index=1, threshold=0.4)
    before = (w.values(), w.rgb.copy())
    W.threshold_scores(w, (0.9,))
    assert w.values() == before[0] and np.array_equal(w.rgb, before[1])


def test_prediction_perfect_and_accepts_class_probabilities(samples):
    sep = [(separate_touching(s.labels) > 0).astype(np.float32) for s in samples]
    two_class = [np.stack([1 - p, p]) for p in sep]
    gts = [(s.image, separate_touching(s.labels)) for s in samples]
    for source in (sep, two_class, [torch.from_numpy(p) for p in two_class]):
        w = W.prediction_explorer(source, gts)
        assert w.state["iou"] == 1.0 and w.state["seg"] == 1.0
        assert w.state["splits"] == 0 and w.state["merges"] == 0


def test_prediction_highlights_merges_and_splits():
    image, labels = two_cells(touching=True)
    merged = (labels > 0).astype(np.float32)  # one blob over both cells
    w = W.prediction_explorer([merged], [(image, labels)])
    assert w.state["merges"] == 1 and w.state["n_pred"] == 1
    np.testing.assert_array_equal(w.arrays["merged"], labels > 0)
    right = w.rgb[:, 60 + 6 :]  # the overlay panel: the blob outlined in orange
    assert (right == W.MERGE).all(axis=2)[labels > 0].sum() > 100
    assert not w.arrays["split"].any()
    assert w.state["seg"] == pytest.approx(0.5)  # each cell is half of the blob
    cut = (labels > 0).astype(np.float32)
    cut[:, 18:20] = 0  # cell 1 cut in two halves
    cut[:, 29:31] = 0  # and kept apart from cell 2
    w = W.prediction_explorer([cut], [(image, labels)])
    assert w.state["splits"] == 1
    np.testing.assert_array_equal(w.arrays["split"], labels == 1)
    right = w.rgb[:, 60 + 6 :]  # the overlay panel
    assert (right[w.arrays["split"]] == W.SPLIT).all(axis=1).sum() > 40  # outlined in magenta


def test_prediction_min_size_drops_specks():
    image, labels = two_cells(touching=False)
    p = (labels > 0).astype(np.float32)
    p[2:4, 2:4] = 1.0  # a 4-pixel false positive
    w = W.prediction_explorer([p], [(image, labels)])
    assert w.state["n_pred"] == 3 and w.state["spurious"] == 1
    fp = w.image.value
    w.controls["min_size"].value = 5
    assert w.state["n_pred"] == 2 and w.state["spurious"] == 0 and w.state["seg"] == 1.0
    assert w.image.value != fp


def test_prediction_method_control_splits_touching_cells_as_training_scores_them():
    from unetlib.instances import InstanceParams, instances_from_probability

    yy, xx = np.mgrid[:48, :72]
    labels = np.zeros((48, 72), np.int32)
    labels[(yy - 24) ** 2 + (xx - 26) ** 2 <= 144] = 1
    labels[((yy - 24) ** 2 + (xx - 46) ** 2 <= 144) & (xx >= 36)] = 2
    p = np.where(labels > 0, 0.9, 0.05).astype(np.float32)  # no gap drawn between them
    w = W.prediction_explorer([p], [(p, labels)])
    assert w.state["merges"] == 1 and w.state["n_pred"] == 1  # the paper's way: one blob
    w.controls["method"].value = "distance"
    assert w.state["merges"] == 0 and w.state["n_pred"] == 2 and w.state["seg"] > 0.9
    # the labels are those the training evaluation makes with the same parameters
    expected = instances_from_probability(p, InstanceParams("distance", 0.5, h=2.0))
    np.testing.assert_array_equal(w.arrays["pred_labels"], expected)
    w.controls["h"].value = 6.0
    np.testing.assert_array_equal(w.arrays["pred_labels"], instances_from_probability(
        p, InstanceParams("distance", 0.5, h=6.0)))
    with pytest.raises(ValueError, match="method"):
        W.prediction_explorer([p], [(p, labels)], method="hysteresis")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explorer_colours_the_cells_metrics_counts(samples, seed):
    p = noisy_probabilities(samples, seed)[0]
    rng = np.random.default_rng(seed)
    p = np.clip(p + rng.normal(0, 0.3, p.shape), 0, 1).astype(np.float32)
    w = W.prediction_explorer([p], samples[:1], threshold=0.55)
    merged_ids, split_ids = split_merge_ids(w.arrays["pred_labels"], samples[0].labels)
    counts = split_merge_counts(w.arrays["pred_labels"], samples[0].labels)
    assert (merged_ids.size, split_ids.size) == (counts["merges"], counts["splits"])
    assert w.state["seg"] == pytest.approx(seg_measure(w.arrays["pred_labels"], samples[0].labels))


def test_prediction_runs_a_model_once_per_image(samples):
    from unetlib.model import UNet
    from unetlib.tiling import predict_tiled

    torch.manual_seed(0)
    model = UNet(in_channels=1, num_classes=2, depth=2, base_channels=4, padding="same")
    ref = predict_tiled(model, samples[0].image, tile=SIZE)[1].numpy()
    calls = []
    forward = model.forward
    model.forward = lambda x: calls.append(x.shape) or forward(x)
    w = W.prediction_explorer(model, samples, tile=SIZE)
    per_image = len(calls)
    assert per_image > 0
    np.testing.assert_allclose(w.arrays["probability"], ref, atol=1e-6)
    w.controls["threshold"].value = 0.3
    assert len(calls) == per_image  # a threshold change does not run the network
    for i in (1, 0, 1):
        w.controls["index"].value = i
    assert len(calls) == 2 * per_image  # each image predicted once
    calls.clear()
    W.prediction_explorer(model, samples, tile=SIZE, precompute=True)
    assert len(calls) == 2 * per_image  # both images at once


# ---------------------------------------------------------------------------------- common


def test_inputs_are_checked(samples):
    with pytest.raises(ValueError, match="index"):
        W.augmentation_explorer(samples, index=5)
    with pytest.raises(ValueError, match="2 samples"):
        W.prediction_explorer([np.zeros((SIZE, SIZE))], samples)
    with pytest.raises(ValueError, match="shape"):
        W.prediction_explorer([np.zeros((5, 5))] * 2, samples)
    with pytest.raises(ValueError, match="no labels"):
        W.weight_map_explorer([(samples[0].image, None)])
    with pytest.raises(TypeError, match="Sample"):
        W.weight_map_explorer([42])
    with pytest.raises(ValueError, match="min_size"):
        W.prediction_explorer([np.zeros((SIZE, SIZE))] * 2, samples, min_size=-1)
    with pytest.raises(ValueError, match="unknown control"):
        W.weight_map_explorer(samples).set(bogus=1)


def test_widget_state_holds_the_picture(samples):
    """The picture is the Image widget's value, so it is saved with the widget state."""
    from ipywidgets.embed import dependency_state

    w = W.augmentation_explorer(samples)
    import base64

    entry = dependency_state([w])[w.image.model_id]
    assert entry["state"]["format"] == "jpeg"
    (buffer,) = [b for b in entry["buffers"] if b["path"] == ["value"]]
    assert base64.b64decode(buffer["data"]) == w.image.value


@pytest.mark.parametrize("make, control, values", [
    (lambda s: W.augmentation_explorer(s), "sigma", [0.0, 10.0, 25.0]),
    (lambda s: W.weight_map_explorer(s), "w0", [0.0, 5.0, 10.0]),
    (lambda s: W.prediction_explorer([np.clip(x.labels > 0, 0.05, 0.95) for x in s], s),
     "threshold", [0.1, 0.5, 0.9]),
])
def test_static_explorer_holds_each_picture_and_links_the_slider_in_the_page(samples, make,
                                                                            control, values):
    """Without a kernel the page switches pictures itself: each value's picture and numbers are
    a child of a Stack, and a jslink (a LinkModel in the saved widget state) ties the slider's
    index to the Stack's selected index."""
    from ipywidgets.embed import dependency_state

    explorer = make(samples)
    before = explorer.values()
    box = W.static_explorer(explorer, control, values)
    assert explorer.values() == before  # the explorer is put back
    pictures = [page.children[0].value for page in box.stack.children]
    for v, picture in zip(values, pictures, strict=True):
        explorer.set(**{control: v})
        assert picture == W.encode_image(explorer.rgb, "jpeg", 70, subsampling=2)
    assert len(set(pictures)) == len(values)  # every value shows its own picture
    start = values.index(before[control]) if before[control] in values else 0
    assert box.slider.index == box.stack.selected_index == start
    assert [label for label, _ in box.slider.options] == [format(v, "g") for v in values]
    state = dependency_state([box, box.link])
    assert state[box.link.model_id]["model_name"] == "LinkModel"
    link = state[box.link.model_id]["state"]
    assert link["source"] == [f"IPY_MODEL_{box.slider.model_id}", "index"]
    assert link["target"] == [f"IPY_MODEL_{box.stack.model_id}", "selected_index"]


def test_static_explorer_refuses_bad_arguments_by_name(samples):
    w = W.weight_map_explorer(samples)
    with pytest.raises(ValueError, match="control"):
        W.static_explorer(w, "w1", [0.0, 1.0])
    with pytest.raises(ValueError, match="values"):
        W.static_explorer(w, "w0", [1.0])
    with pytest.raises(ValueError, match="start"):
        W.static_explorer(w, "w0", [0.0, 1.0], start=3.0)


@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_encode_image_writes_a_restart_marker_every_few_blocks_and_the_same_pixels(blocks):
    """Restart markers (what lets a page's copy be cleared of path lookalikes) change the
    entropy coding only: the decoded pixels are those of the JPEG without them."""
    import io

    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    data = W.encode_image(rgb, "jpeg", 70, 2, restart_blocks=blocks)
    markers = sum(data.count(bytes([0xFF, 0xD0 + k])) for k in range(8))
    mcus = (64 // 16) * (96 // 16)  # 16 x 16 pixels a block at 4:2:0
    assert markers == (mcus - 1) // blocks if blocks else markers == 0

    def pixels(b: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(b)))

    assert np.array_equal(pixels(data), pixels(W.encode_image(rgb, "jpeg", 70, 2, 0)))
