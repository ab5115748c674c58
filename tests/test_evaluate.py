"""unetlib.evaluate: averaging several models' probabilities (an ensemble of seeds), frames at
the training frames' contrast."""

from __future__ import annotations

import numpy as np
import pytest

from unetlib.config import TrainConfig
from unetlib.evaluate import (
    at_training_contrast,
    ensemble_probabilities,
    evaluate_probabilities,
    predict_frames,
)


def test_ensemble_is_the_framewise_mean_of_the_models_probabilities():
    rng = np.random.default_rng(0)
    a = [rng.random((8, 9)).astype(np.float32) for _ in range(3)]
    b = [rng.random((8, 9)).astype(np.float32) for _ in range(3)]
    out = ensemble_probabilities([a, b])
    assert len(out) == 3 and all(o.dtype == np.float32 and o.shape == (8, 9) for o in out)
    for k in range(3):
        np.testing.assert_allclose(out[k], (a[k].astype(np.float64) + b[k]) / 2, rtol=1e-6)
    assert all(np.array_equal(x, y) for x, y in zip(ensemble_probabilities([a]), a, strict=True))
    # order of the models does not matter
    assert all(np.array_equal(x, y) for x, y in zip(out, ensemble_probabilities([b, a]),
                                                     strict=True))


@pytest.mark.parametrize("per_model, match", [
    ([], "at least one model"),
    ([[np.zeros((4, 4))], [np.zeros((4, 4))] * 2], "model 1 predicted 2 frames, model 0 1"),
    ([[np.zeros((4, 4))], [np.zeros((4, 5))]], r"frame 0: model 1's probability is \(4, 5\)"),
])
def test_ensemble_refuses_predictions_that_do_not_pair_up(per_model, match):
    with pytest.raises(ValueError, match=match):
        ensemble_probabilities(per_model)


def _disc_frames():
    """Two frames of two touching discs each, with a probability that dips between them."""
    yy, xx = np.mgrid[:48, :64]
    labels, probs = [], []
    for shift in (0, 3):
        lab = np.zeros((48, 64), np.int32)
        lab[(yy - 24) ** 2 + (xx - 18 - shift) ** 2 < 121] = 1
        lab[(yy - 24) ** 2 + (xx - 40 - shift) ** 2 < 121] = 2
        p = np.where(lab > 0, 0.95, 0.05).astype(np.float32)
        p[:, 29 + shift] = 0.2  # the gap between the cells
        labels.append(lab)
        probs.append(p)
    return probs, labels


def test_an_ensemble_of_one_model_twice_scores_as_that_model():
    probs, labels = _disc_frames()
    config = TrainConfig(dataset="DIC-C2DH-HeLa", tune_threshold=True)
    alone = evaluate_probabilities(probs[:1], labels[:1], probs[1:], labels[1:], config)
    twice = evaluate_probabilities(ensemble_probabilities([probs[:1], probs[:1]]), labels[:1],
                                   ensemble_probabilities([probs[1:], probs[1:]]), labels[1:],
                                   config)
    for method in ("components", "watershed", "distance"):
        assert twice[method]["params"] == alone[method]["params"]
        assert twice[method]["metrics"] == alone[method]["metrics"]
    assert alone["components"]["metrics"]["seg"] > 0.9  # the two cells are found apart


@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (0.8, 0.05), (1.3, -0.1)])
def test_a_frame_at_training_contrast_predicts_the_same_whatever_its_gray_scale(scale, offset):
    import torch

    from unetlib.model import UNet

    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4, padding="same", input_mean=0.47,
                 input_std=0.04).eval()
    rng = np.random.default_rng(0)
    frame = (0.47 + 0.04 * rng.standard_normal((40, 48))).astype(np.float32)
    matched = at_training_contrast(frame, model)
    assert float(matched.mean()) == pytest.approx(0.47, abs=1e-6)
    assert float(matched.double().std()) == pytest.approx(0.04, rel=1e-5)
    other = at_training_contrast(scale * frame + offset, model)
    np.testing.assert_allclose(other.numpy(), matched.numpy(), atol=1e-6)
    config = TrainConfig(dataset="DIC-C2DH-HeLa", depth=2, padding="same", input_tile=32)
    a, b = (predict_frames(model, [f], config)[0] for f in (matched, other))
    np.testing.assert_allclose(a, b, atol=1e-4)
    if scale != 1.0:  # without it the model does see the other contrast
        c, d = (predict_frames(model, [torch.as_tensor(f)], config)[0]
                for f in (frame, scale * frame + offset))
        assert np.abs(c - d).max() > 1e-3


def test_at_training_contrast_refuses_a_flat_frame():
    from unetlib.model import UNet

    with pytest.raises(ValueError, match="constant gray value"):
        at_training_contrast(np.full((8, 8), 0.5, np.float32), UNet(depth=2, base_channels=4,
                                                                    padding="same"))
