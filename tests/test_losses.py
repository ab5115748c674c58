"""Losses: weighted cross-entropy (paper eq. 1) against a by-hand computation, Dice variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unetlib.losses import bce_dice_loss, center_crop, soft_dice_loss, weighted_cross_entropy


def _by_hand_weighted_ce(logits: np.ndarray, target: np.ndarray, weight: np.ndarray):
    """Per-pixel w * (-log softmax) in float64, with explicit loops over classes."""
    n, c, h, w = logits.shape
    a = logits.astype(np.float64)
    m = a.max(axis=1, keepdims=True)
    log_z = m[:, 0] + np.log(np.exp(a - m).sum(axis=1))
    out = np.zeros((n, h, w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                out[i, y, x] = weight[i, y, x] * (log_z[i, y, x] - a[i, target[i, y, x], y, x])
    return out


@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("crop", [0, 3])
def test_weighted_ce_matches_by_hand(num_classes, crop):
    rng = np.random.default_rng(num_classes + crop)
    n, h, w = 2, 6, 5
    logits = rng.normal(scale=3, size=(n, num_classes, h, w)).astype(np.float32)
    target = rng.integers(0, num_classes, size=(n, h + 2 * crop, w + 2 * crop))
    weight = rng.uniform(0.5, 11.0, size=target.shape).astype(np.float32)
    tc = target[:, crop : crop + h, crop : crop + w]
    wc = weight[:, crop : crop + h, crop : crop + w]
    ref = _by_hand_weighted_ce(logits, tc, wc)

    lt = torch.from_numpy(logits)
    tt, wt = torch.from_numpy(target), torch.from_numpy(weight)
    none = weighted_cross_entropy(lt, tt, wt, reduction="none")
    np.testing.assert_allclose(none.numpy(), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        weighted_cross_entropy(lt, tt, wt, reduction="sum").item(), ref.sum(), rtol=1e-5
    )
    # "mean" = sum(w * ce) / number of pixels (not / sum of weights)
    np.testing.assert_allclose(weighted_cross_entropy(lt, tt, wt).item(), ref.mean(), rtol=1e-5)


def test_weighted_ce_gradient_by_hand():
    """d/da mean(w * ce) = w * (softmax(a) - onehot) / num_pixels."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4))
    weight = torch.rand(2, 4, 4, dtype=torch.float64) * 10
    weighted_cross_entropy(logits, target, weight).backward()
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).double()
    expected = weight[:, None] * (torch.softmax(logits.detach(), 1) - onehot) / (2 * 4 * 4)
    torch.testing.assert_close(logits.grad, expected.float().double(), atol=1e-6, rtol=1e-5)


def test_unweighted_equals_torch_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 7, 9)
    target = torch.randint(0, 2, (3, 7, 9))
    torch.testing.assert_close(
        weighted_cross_entropy(logits, target), F.cross_entropy(logits, target)
    )
    ones = torch.ones(3, 7, 9)
    torch.testing.assert_close(
        weighted_cross_entropy(logits, target, ones), F.cross_entropy(logits, target)
    )


def test_weighted_ce_extreme_logits_finite():
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4]]).T.reshape(1, 2, 1, 2).requires_grad_()
    target = torch.tensor([[[1, 1]]])
    loss = weighted_cross_entropy(logits, target, torch.full((1, 1, 2), 10.0))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(10 * 2e4 / 2)


@pytest.mark.parametrize(
    "target, weight, exc, match",
    [
        (torch.zeros(2, 4, 4), None, TypeError, "integer"),
        (torch.zeros(2, 3, 3, dtype=torch.long), None, ValueError, "smaller"),
        (torch.zeros(2, 5, 5, dtype=torch.long), None, ValueError, "even"),
        (torch.zeros(1, 4, 4, dtype=torch.long), None, ValueError, "target"),
        (torch.zeros(2, 4, 4, dtype=torch.long), torch.ones(2, 4), ValueError, "weight"),
    ],
)
def test_weighted_ce_errors(target, weight, exc, match):
    with pytest.raises(exc, match=match):
        weighted_cross_entropy(torch.randn(2, 2, 4, 4), target, weight)


def test_weighted_ce_reduction_and_class_errors():
    with pytest.raises(ValueError, match="reduction"):
        weighted_cross_entropy(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long),
                               reduction="avg")
    with pytest.raises(ValueError, match="classes"):
        weighted_cross_entropy(torch.randn(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_bce_dice_known_values():
    """Zero logits: p = 0.5 everywhere, so BCE = ln 2 and Dice = (2*0.5*F + 1) / (0.5*P + F + 1)
    with P pixels of which F are foreground."""
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1  # F = 8 foreground pixels of P = 32
    logits = torch.zeros(2, 1, 4, 4)
    dice = (2 * 0.5 * 8 + 1) / (0.5 * 32 + 8 + 1)
    assert bce_dice_loss(logits, target).item() == pytest.approx(np.log(2) + 1 - dice, rel=1e-6)
    assert bce_dice_loss(logits, target, bce_weight=0.0).item() == pytest.approx(1 - dice)
    assert bce_dice_loss(logits, target, dice_weight=0.0).item() == pytest.approx(np.log(2))
    # confident and right: both terms ~ 0; confident and wrong: BCE ~ 20, Dice 1 - 1/(24+8+1)
    good = (target[:, None] * 2 - 1) * 20
    assert bce_dice_loss(good, target).item() < 1e-5
    assert bce_dice_loss(-good, target).item() == pytest.approx(20 + 1 - 1 / 33, rel=1e-6)


def test_bce_dice_two_class_equals_single_logit():
    torch.manual_seed(0)
    two = torch.randn(2, 2, 6, 6)
    one = two[:, 1:2] - two[:, 0:1]
    target = (torch.rand(2, 1, 10, 10) > 0.5).long()  # (N, 1, H, W), centre-cropped to 6x6
    torch.testing.assert_close(bce_dice_loss(two, target), bce_dice_loss(one, target))
    # the BCE term then equals the unweighted two-class cross-entropy
    torch.testing.assert_close(
        bce_dice_loss(two, target, dice_weight=0.0),
        weighted_cross_entropy(two, target[:, 0]),
    )


def test_soft_dice_limits_and_classes():
    target = torch.randint(0, 3, (2, 8, 8))
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(perfect, target, include_background=True).item() == pytest.approx(
        0.0, abs=1e-6)
    wrong = torch.roll(perfect, 1, dims=1)  # always predicts the wrong class
    assert soft_dice_loss(wrong, target, eps=0.0).item() == pytest.approx(1.0, abs=1e-6)
    # single logit with a binary float target
    fg = (target > 0).float()
    logit = (fg * 2 - 1)[:, None] * 50
    assert soft_dice_loss(logit, fg).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(-logit, fg, eps=0.0).item() == pytest.approx(1.0, abs=1e-6)


def test_soft_dice_by_hand():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 5, 5)
    target = (torch.rand(2, 5, 5) > 0.5).float()
    p = torch.sigmoid(logits[:, 0]).double()
    t = target.double()
    expected = 1 - (2 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)
    assert soft_dice_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    "loss_fn, channels, target_kind",
    [
        (weighted_cross_entropy, 2, "index"),
        (weighted_cross_entropy, 5, "index"),
        (soft_dice_loss, 1, "binary"),
        (soft_dice_loss, 3, "index"),
        (bce_dice_loss, 1, "binary"),
        (bce_dice_loss, 2, "index"),
    ],
)
def test_gradients_finite_through_network(loss_fn, channels, target_kind):
    from unetlib.model import UNet

    torch.manual_seed(0)
    net = UNet(num_classes=channels, depth=3, base_channels=4)
    x = torch.randn(2, 1, 60, 60)
    logits = net(x)  # 20x20 output; targets at the 60x60 input size are centre-cropped
    assert logits.shape[-1] == 20
    if target_kind == "index":
        target = torch.randint(0, min(channels, 2) if loss_fn is bce_dice_loss else channels,
                               (2, 60, 60))
    else:
        target = (torch.rand(2, 60, 60) > 0.5).float()
    loss = loss_fn(logits, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_center_crop_reexported():
    x = torch.arange(36).reshape(6, 6)
    assert center_crop(x, 2).tolist() == [[14, 15], [20, 21]]
