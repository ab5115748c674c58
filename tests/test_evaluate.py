"""unetlib.evaluate: averaging several models' probabilities (an ensemble of seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from unetlib.config import TrainConfig
from unetlib.evaluate import ensemble_probabilities, evaluate_probabilities


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
