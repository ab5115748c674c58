"""unetlib.plots: the Markdown metrics table, the error overlay, close-up windows and figures."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

from unetlib.plots import (  # noqa: E402
    KERAS_REPRODUCTION,
    PAPER,
    first_touching_window,
    metrics_table,
    overlay,
    paper_metrics,
    plot_history,
    plot_predictions,
    plot_weight_map_panels,
    plot_weight_map_timing,
)


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------------------------
# metrics_table


def test_metrics_table_layout():
    table = metrics_table({"run a": {"iou": 0.5, "f1": 0.25}, "run b": {"f1": 1}}, ["iou", "f1"])
    assert table == ("| | pixel IoU | pixel F1 |\n"
                     "|---|---|---|\n"
                     "| run a | 0.500 | 0.250 |\n"
                     "| run b | – | 1.000 |\n")


def test_metrics_table_without_rows():
    assert metrics_table({}, ["seg"]) == "| | SEG |\n|---|---|\n"


@pytest.mark.parametrize("column, value, text", [
    ("seg", 0.77561234, "0.776"), ("merges", 0.5555556, "0.56"), ("n_gt", 10.7777, "10.8"),
    ("cells", 97, "97"), ("isbi_warping_error", 0.000353, "0.000353"),
    ("isbi_rand_error", 0.0671234, "0.06712"), ("threshold", 0.85, "0.85"),
    ("seg", "0.7756", "0.7756"),  # a published number given as text stays as published
])
def test_metrics_table_names_and_precision_of_known_columns(column, value, text):
    from unetlib.plots import COLUMN_LABELS

    table = metrics_table({"r": {column: value}}, [column])
    assert table.splitlines()[0] == f"| | {COLUMN_LABELS[column][0]} |"
    assert table.splitlines()[2] == f"| r | {text} |"


@pytest.mark.parametrize("value, text", [
    (None, "–"),
    (math.nan, "–"),
    (float("nan"), "–"),
    (0.000353, "0.000353"),
    (0.77561234, "0.7756"),
    (48.75, "48.75"),
    (1234.5678, "1235"),
    (9999.4, "9999"),
    (123456.7, "123457"),
    (-20000.4, "-20000"),
    (1e-7, "1e-07"),
    (12, "12"),
    (0, "0"),
    ("n/a", "n/a"),
    (np.float64(0.123456), "0.1235"),
])
def test_metrics_table_cell_format_of_other_columns(value, text):
    table = metrics_table({"r": {"x": value}}, ["x"])
    assert table.splitlines()[2] == f"| r | {text} |"


def test_published_numbers():
    assert PAPER["DIC-C2DH-HeLa"]["seg"] == 0.7756
    assert PAPER["PhC-C2DH-U373"]["seg"] == 0.9203
    assert PAPER["isbi2012"]["warping_error"] == 0.000353
    assert set(KERAS_REPRODUCTION) == {"without augmentation", "with augmentation"}
    assert all(set(v) == {"iou", "f1"} for v in KERAS_REPRODUCTION.values())


@pytest.mark.parametrize("dataset, expected", [
    ("isbi2012", {"isbi_warping_error": 0.000353, "isbi_rand_error": 0.0382,
                  "isbi_pixel_error": 0.0611}),
    ("DIC-C2DH-HeLa", {"seg": 0.7756}),
    ("PhC-C2DH-U373", {"seg": 0.9203}),
    ("synthetic", {}),
    ("livecell", {}),
])
def test_paper_metrics_use_our_metric_names(dataset, expected):
    got = paper_metrics(dataset)
    assert got == expected
    got["extra"] = 1.0  # a fresh dict every time
    assert "extra" not in paper_metrics(dataset) and "extra" not in PAPER.get(dataset, {})


# ----------------------------------------------------------------------------------------------
# overlay


def test_overlay_shape_and_colours():
    image = np.full((4, 5), 0.5, np.float32)
    image[0, 0] = 3.0  # clipped to 1
    image[0, 1] = -1.0  # clipped to 0
    pred = np.zeros((4, 5), bool)
    truth = np.zeros((4, 5), bool)
    pred[1, 0] = truth[1, 0] = True  # true positive
    pred[2, 0] = True  # false positive
    truth[3, 0] = True  # false negative
    rgb = overlay(image, pred, truth)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [255] * 3 and rgb[0, 1].tolist() == [0] * 3
    assert rgb[3, 4].tolist() == [128] * 3  # true negative: the gray value
    # the legend colour blended over the gray value 128 (35 % for TP, 50 % for errors)
    assert rgb[1, 0].tolist() == [97, 153, 104]  # green: TP (40, 200, 60)
    assert rgb[2, 0].tolist() == [179, 84, 84]  # red: FP (230, 40, 40)
    assert rgb[3, 0].tolist() == [84, 119, 192]  # blue: FN (40, 110, 255)


def test_overlay_does_not_modify_its_inputs():
    rng = np.random.default_rng(0)
    image = rng.random((6, 6))
    pred, truth = rng.random((6, 6)) > 0.5, rng.random((6, 6)) > 0.5
    copies = image.copy(), pred.copy(), truth.copy()
    rgb = overlay(image, pred, truth)
    for a, b in zip((image, pred, truth), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    tn = ~pred & ~truth
    np.testing.assert_array_equal(rgb[tn], np.stack([np.round(image[tn] * 255)] * 3, -1))
    tp = pred & truth
    assert np.all(rgb[tp][:, 1] > rgb[tp][:, 0])  # green dominates true positives
    # integer or 0/1 masks mean the same as boolean ones
    np.testing.assert_array_equal(overlay(image, pred.astype(int), truth.astype(np.uint8)), rgb)


def test_one_colour_legend_for_figures_explorers_and_samples():
    """The explorers draw the same errors picture and the book's figures the same outlines."""
    from unetlib import plots, widgets
    from unetlib.data.show import label_overlay

    for name in ("CONTOUR", "GRID", "ARROW", "MERGE", "SPLIT", "TP", "FP", "FN"):
        assert getattr(widgets, name) is getattr(plots, name)
    colours = [plots.CONTOUR, plots.MERGE, plots.SPLIT, plots.TP, plots.FP, plots.FN]
    assert len(set(colours)) == len(colours)  # one meaning per colour in the prediction view
    labels = np.zeros((60, 60), np.int32)
    labels[25:45, 10:30] = 1
    image = np.random.default_rng(3).random((60, 60))
    outline = label_overlay(image, labels)[25, 10]
    np.testing.assert_allclose(outline, np.array(plots.CONTOUR) / 255)
    prob = np.zeros((60, 60), np.float32)
    prob[30:50, 15:35] = 1.0  # shifted: true and false positives and misses
    w = widgets.prediction_explorer([prob], [(image, labels)], threshold=0.5, min_size=0)
    right = w.rgb[20:, 60 + 6 :]  # the errors panel below its caption
    np.testing.assert_array_equal(right, overlay(image, prob > 0.5, labels > 0)[20:])


# ----------------------------------------------------------------------------------------------
# first_touching_window


def _window_touches(labels, window) -> bool:
    lab = labels[window]
    right = (lab[:, :-1] > 0) & (lab[:, 1:] > 0) & (lab[:, :-1] != lab[:, 1:])
    down = (lab[:-1] > 0) & (lab[1:] > 0) & (lab[:-1] != lab[1:])
    return bool(right.any() or down.any())


@pytest.mark.parametrize("orientation", ["side by side", "one above the other"])
def test_window_shows_where_two_cells_touch(orientation):
    labels = np.zeros((64, 80), np.int32)
    labels[5:15, 5:12] = 3  # far away and not touching anything
    if orientation == "side by side":
        labels[40:50, 30:45] = 1
        labels[40:50, 45:60] = 2
    else:
        labels[20:35, 50:60] = 1
        labels[35:50, 50:60] = 2
    ys, xs = first_touching_window(labels, size=16)
    assert (ys.stop - ys.start, xs.stop - xs.start) == (16, 16)
    assert 0 <= ys.start and ys.stop <= 64 and 0 <= xs.start and xs.stop <= 80
    assert _window_touches(labels, (ys, xs))
    assert {1, 2} <= set(np.unique(labels[ys, xs]))


def test_window_is_centred_when_no_cells_touch():
    labels = np.zeros((64, 80), np.int32)
    labels[10:20, 10:20] = 1
    labels[10:20, 21:30] = 2  # one background column between them
    labels[40:50, 40:50] = 3  # touches only the background
    assert first_touching_window(labels, size=16) == (slice(24, 40), slice(32, 48))
    assert first_touching_window(np.zeros((10, 10), int), size=4) == (slice(3, 7), slice(3, 7))


def test_window_is_clipped_to_the_image():
    labels = np.zeros((50, 50), np.int32)
    labels[0:3, 44:47] = 1
    labels[0:3, 47:50] = 2  # touching in the top right corner
    ys, xs = first_touching_window(labels, size=20)
    assert (ys, xs) == (slice(0, 20), slice(30, 50))
    assert _window_touches(labels, (ys, xs))


def test_window_larger_than_the_image_starts_at_zero():
    labels = np.zeros((10, 12), np.int32)
    labels[2:5, 2:6] = 1
    labels[2:5, 6:9] = 2
    assert first_touching_window(labels, size=96) == (slice(0, 96), slice(0, 96))


def test_window_centres_the_touching_pixel_nearest_the_median():
    labels = np.zeros((200, 200), np.int32)
    for k, x in enumerate((20, 100, 180)):  # three touching pairs along a row
        labels[95:105, x - 5:x] = 2 * k + 1
        labels[95:105, x:x + 5] = 2 * k + 2
    ys, xs = first_touching_window(labels, size=10)
    assert xs.start <= 99 < xs.stop and ys.start <= 100 < ys.stop  # the middle pair
    assert _window_touches(labels, (ys, xs))


# ----------------------------------------------------------------------------------------------
# figures


def _history(n=3, val=True):
    rows = []
    for i in range(1, n + 1):
        row = {"step": 10 * i, "train_loss": 1.0 / i, "train_f1": 0.5 + 0.1 * i}
        if val:
            row.update(val_loss=1.2 / i, val_f1=0.4 + 0.1 * i)
        rows.append(row)
    return rows


def test_plot_history(close_figures):
    runs = {"with augmentation": {"history": _history(), "best_step": 20},
            "without": {"history": _history(2, val=False)}}
    fig = plot_history(runs)
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = fig.axes
    assert len(axes) == 4  # 2 keys x 2 runs
    titles = [ax.get_title() for ax in axes]
    assert titles == ["with augmentation: loss", "without: loss",
                      "with augmentation: f1", "without: f1"]
    assert len(axes[0].lines) == 3  # training, validation, best step
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), [1.0, 0.5, 1 / 3])
    np.testing.assert_allclose(axes[2].lines[1].get_ydata(), [0.5, 0.6, 0.7])
    assert len(axes[1].lines) == 1  # training only, no best step
    assert axes[0].get_legend() is not None


def test_plot_history_of_one_run_and_key(close_figures):
    fig = plot_history({"r": {"history": _history(1), "best_step": 10}}, keys=("iou",))
    assert len(fig.axes) == 1
    assert len(fig.axes[0].lines) == 1  # no train_iou or val_iou: only the best-step line


def test_plot_predictions(close_figures):
    rng = np.random.default_rng(1)
    images = [rng.random((16, 16)).astype(np.float32) for _ in range(2)]
    labels = [np.zeros((16, 16), np.int32) for _ in range(2)]
    for lab in labels:
        lab[3:8, 3:8] = 1
        lab[9:14, 4:12] = 2
    probs = {"aug": [rng.random((16, 16)) for _ in range(2)],
             "no aug": [rng.random((16, 16)) for _ in range(2)]}
    fig = plot_predictions(images, labels, probs, threshold=0.3, titles=["x/a", "x/b"])
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 2 * (1 + 2 * 2) + 1  # the panels and one colour bar
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:5] == ["image, ground truth", "aug:\nP(cell)", "aug:\nerrors at 0.30",
                          "no aug:\nP(cell)", "no aug:\nerrors at 0.30"]
    assert not any(titles[5:10])  # headers on the first row only
    assert [t.get_text() for t in fig.axes[0].texts] == ["a"]  # the frame's name on the left
    assert [t.get_text() for t in fig.axes[5].texts] == ["b"]
    assert fig.axes[-1].get_ylabel() == "P(cell)"
    assert not any(ax.axison for ax in fig.axes[:-1])
    shown = fig.axes[2].get_images()[0].get_array()
    np.testing.assert_allclose(shown, overlay(images[0], probs["aug"][0] > 0.3, labels[0] > 0))


def test_plot_predictions_default_titles_and_length_check(close_figures):
    img, lab = np.zeros((8, 8)), np.zeros((8, 8), int)
    fig = plot_predictions([img], [lab], {"m": [np.full((8, 8), 0.9)]})
    assert [t.get_text() for t in fig.axes[0].texts] == ["image 1"]
    with pytest.raises(ValueError):
        plot_predictions([img, img], [lab], {"m": [img, img]})


def test_plot_predictions_with_a_threshold_per_model(close_figures):
    rng = np.random.default_rng(2)
    images = [rng.random((16, 16)).astype(np.float32)]
    labels = [np.zeros((16, 16), np.int32)]
    labels[0][3:8, 3:8] = 1
    p = rng.random((16, 16))
    fig = plot_predictions(images, labels, {"x": [p], "y": [p]}, threshold={"x": 0.2, "y": 0.8})
    assert [fig.axes[2].get_title(), fig.axes[4].get_title()] == ["x:\nerrors at 0.20",
                                                                  "y:\nerrors at 0.80"]
    for ax, t in ((fig.axes[2], 0.2), (fig.axes[4], 0.8)):
        np.testing.assert_allclose(ax.get_images()[0].get_array(),
                                   overlay(images[0], p > t, labels[0] > 0))


def _cells() -> np.ndarray:
    """Four cells, two of them touching (so the mask shows a separation)."""
    labels = np.zeros((48, 64), np.int32)
    labels[5:20, 5:30] = 1
    labels[5:20, 30:50] = 2
    labels[28:44, 10:25] = 3
    labels[30:40, 40:60] = 4
    return labels


def test_weight_map_panels(close_figures):
    labels = _cells()
    image = np.random.default_rng(0).random(labels.shape)
    fig = plot_weight_map_panels(labels, image, crop=(0, 30, 0, 40), title="t")
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 6  # frame, four maps, the profile along one row
    from unetlib.weights import weight_map

    profile = titled[-1]
    row = int(profile.get_title().split("row ")[1].split()[0])
    expected = weight_map(labels)[0:30, 0:40][row]
    np.testing.assert_allclose(profile.lines[0].get_ydata(), expected, rtol=1e-6)
    assert all(cb.get_ylabel() == "weight (per pixel)" for cb in fig.axes if not cb.get_title()
               and cb.get_ylabel())
    assert len(plot_weight_map_panels(labels).axes) == 4 + 3  # four panels + three colorbars
    with pytest.raises(ValueError, match="image shape"):
        plot_weight_map_panels(labels, image[:10])
    with pytest.raises(ValueError, match="one"):
        plot_weight_map_panels(labels[None])


def test_weight_map_timing(close_figures, tmp_path):
    row = {"case": "random", "cells": 10, "ours_s": 0.01, "naive_min_s": 0.2, "naive_sort_s": 0.3,
           "speedup_vs_naive_min": 20.0, "speedup_vs_naive_sort": 30.0}
    hela = dict(row, case="hela/01/man_seg002")
    result = {"rows": [row, dict(row, cells=100), hela]}
    fig = plot_weight_map_timing(result)
    assert len(fig.axes) == 2
    path = tmp_path / "bench_weights.json"
    path.write_text(json.dumps(result))
    assert len(plot_weight_map_timing(path).axes[0].lines) == 6  # 3 series x (random, real)
    # a file with the before (the windowed scipy transform) draws it as a fourth series
    before = {"rows": [dict(r, windowed_scipy_s=0.03) for r in result["rows"]]}
    assert len(plot_weight_map_timing(before).axes[0].lines) == 8
    with pytest.raises(ValueError, match="rows"):
        plot_weight_map_timing({"rows": []})
    with pytest.raises(ValueError, match="rows"):
        plot_weight_map_timing({"cells": 3})


def test_architecture_is_read_from_the_network_and_matches_the_papers_figure():
    import torch

    from unetlib.model import UNet
    from unetlib.plots import architecture_levels, plot_architecture

    net = UNet(depth=3, base_channels=4)
    before = [p.detach().clone() for p in net.parameters()]
    with torch.device("meta"):
        paper = UNet.paper()
    levels = architecture_levels(paper, 572)  # paper Fig. 1
    assert [(lv["down_in"], lv["down_out"], lv["channels"]) for lv in levels] == [
        (572, 568, 64), (284, 280, 128), (140, 136, 256), (68, 64, 512), (32, 28, 1024)]
    assert [(lv["up_in"], lv["up_out"]) for lv in levels[:4]] == [
        (392, 388), (200, 196), (104, 100), (56, 52)]
    assert levels[0]["output"] == (388, 388)
    fig = plot_architecture(net, 60)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "60² → 56²" in texts and "copy and crop" in " ".join(
        t.get_text() for t in fig.axes[0].get_legend().get_texts())
    # the real network is untouched (the shapes come from a weightless twin)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_plot_outlines_labels_every_reference_cell_with_its_jaccard():
    from unetlib.plots import plot_outlines

    truth = np.zeros((40, 60), np.int32)
    truth[5:25, 5:25], truth[5:25, 30:50] = 1, 2
    tight = np.zeros_like(truth)
    tight[10:25, 5:25] = 1  # cell 1 with a quarter left out; cell 2 not found
    fig = plot_outlines(np.full(truth.shape, 0.5), truth, {"a": tight, "b": truth}, title="t")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["a", "b"]
    assert sorted(t.get_text() for t in axes[0].texts) == ["0.00", "0.75"]
    assert sorted(t.get_text() for t in axes[1].texts) == ["1.00", "1.00"]
    assert fig._suptitle.get_text() == "t"
