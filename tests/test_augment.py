"""unetlib.Augment: the paper's augmentation applied jointly to image, labels and weights."""

from __future__ import annotations

import math

import pytest
import torch

from unetlib import Augment
from unetlib.augment import parameters

N, H, W = 3, 40, 32


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(N, 1, H, W, generator=g)
    labels = torch.randint(0, 6, (N, H, W), generator=g, dtype=torch.int32) * 7
    weights = torch.rand(N, H, W, generator=g) * 10
    return image, labels, weights


def _run(aug: Augment, seed: int, *batch):
    return aug(*batch, generator=torch.Generator().manual_seed(seed))


def test_same_seed_same_output_other_seed_differs():
    batch = _batch()
    aug = Augment()
    a, b, c = _run(aug, 1, *batch), _run(aug, 1, *batch), _run(aug, 2, *batch)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    m1, m2 = Augment(seed=4), Augment(seed=4)
    for x, y in zip(m1(*batch), m2(*batch), strict=True):
        assert torch.equal(x, y)


def test_shapes_dtypes_and_label_values_kept():
    image, labels, weights = _batch()
    out, lab, wmap = _run(Augment(), 0, image, labels, weights)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert lab.shape == labels.shape and lab.dtype == labels.dtype
    assert wmap.shape == weights.shape and wmap.dtype == weights.dtype
    assert set(lab.unique().tolist()) <= set(labels.unique().tolist())
    assert torch.isfinite(out).all() and torch.isfinite(wmap).all()
    img_only = _run(Augment(), 0, image)
    assert img_only[1] is None and img_only[2] is None
    torch.testing.assert_close(img_only[0], out, atol=0, rtol=0)


def test_all_parts_off_is_identity():
    image, labels, weights = _batch()
    aug = Augment(flip=False, shift=False, rotation=False, elastic=False, gray=False)
    out = _run(aug, 0, image, labels, weights)
    for x, y in zip(out, (image, labels, weights), strict=True):
        assert torch.equal(x, y)


def test_flip_only_equals_torch_flip():
    image, labels, weights = _batch()
    aug = Augment(shift=False, rotation=False, elastic=False, gray=False)
    out, lab, wmap = _run(aug, 3, image, labels, weights)
    flips = aug._draw(N, torch.Generator().manual_seed(3), H, W)["flip"]
    for i in range(N):
        dims = [d for d in range(2) if flips[i, d]]
        torch.testing.assert_close(out[i], image[i].flip([d + 1 for d in dims]), atol=2e-6, rtol=0)
        assert torch.equal(lab[i], labels[i].flip(dims))
        torch.testing.assert_close(wmap[i], weights[i].flip(dims), atol=1e-5, rtol=0)


def test_labels_follow_the_image():
    """A label map that equals a thresholded image stays consistent after the warp."""
    image, _, _ = _batch()
    image = image.round()  # binary image: order-3 warp then threshold ~ order-0 warp
    labels = image[:, 0].to(torch.int64)
    aug = Augment(gray=False, elastic_sigma=4.0)
    out, lab, _ = _run(aug, 5, image, labels)
    agree = ((out[:, 0] > 0.5).to(torch.int64) == lab).float().mean()
    assert agree > 0.85


def test_switching_a_part_off_keeps_the_other_draws():
    batch = _batch()
    full = _run(Augment(), 9, *batch)
    no_gray = _run(Augment(gray=False), 9, *batch)
    assert torch.equal(full[1], no_gray[1]) and torch.equal(full[2], no_gray[2])
    assert not torch.equal(full[0], no_gray[0])
    no_elastic = _run(Augment(elastic=False), 9, *batch)
    assert not torch.equal(no_elastic[1], full[1])


def test_gaussian_field_is_deform_gaussian_field_with_the_last_draw_and_keeps_the_others():
    """With only the elastic part on, Augment's Gaussian field is
    :func:`unetlib.elastic.deform_gaussian_field` (mirror borders) on the noise drawn after the
    other parts' numbers, which stay those of the B-spline field's calls."""
    from unetlib.elastic import deform_gaussian_field

    image, labels, weights = _batch()
    only = {"flip": False, "shift": False, "rotation": False, "gray": False}
    aug = Augment(**only, elastic_field="gaussian", elastic_alpha=300.0, elastic_smooth=6.0)
    out = _run(aug, 5, image, labels, weights)
    g = torch.Generator().manual_seed(5)
    Augment(**only)._draw(N, g, H, W)  # the other parts' draws come first
    noise = torch.rand((N, 2, H, W), generator=g, dtype=torch.float64) * 2 - 1
    ref = deform_gaussian_field([image, labels[:, None], weights[:, None]], 300.0, 6.0,
                                order=[3, 0, 1], mode="mirror", noise=noise)
    torch.testing.assert_close(out[0], ref[0], rtol=0, atol=1e-6)
    assert torch.equal(out[1], ref[1][:, 0]) and out[1].dtype == labels.dtype
    torch.testing.assert_close(out[2], ref[2][:, 0], rtol=0, atol=1e-5)
    assert not torch.equal(out[0], image)
    # the other parts see the same numbers whichever field is chosen
    rest = {"elastic": False}
    a = _run(Augment(**rest), 3, image, labels, weights)
    b = _run(Augment(**rest, elastic_field="gaussian"), 3, image, labels, weights)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_gray_only_changes_values_not_geometry():
    image, _, _ = _batch()
    aug = Augment(flip=False, shift=False, rotation=False, elastic=False)
    out = _run(aug, 0, image)[0]
    # a monotone per-sample map: the ordering of the pixels is kept
    for i in range(N):
        assert torch.equal(out[i].flatten().argsort(), image[i].flatten().argsort())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "bogus"},
        {"elastic_sigma": -1.0},
        {"max_rotation": float("nan")},
        {"elastic_points": 0},
        {"elastic_field": "simard"},
        {"elastic_alpha": -3.0},
        {"elastic_smooth": float("inf")},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        Augment(**kwargs)


def test_bad_inputs_raise():
    image, labels, weights = _batch()
    aug = Augment()
    with pytest.raises(ValueError):
        aug(image[0])
    with pytest.raises(ValueError):
        aug(image, labels[:, :-1])
    with pytest.raises(TypeError):
        aug(image, labels.float())
    with pytest.raises(TypeError):
        aug(image, labels, labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    batch = _batch()
    cpu = _run(Augment(), 1, *batch)
    gpu = _run(Augment(), 1, *(t.cuda() for t in batch))
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-4, rtol=0)
    assert (gpu[1].cpu() != cpu[1]).float().mean() <= 1e-3


@pytest.mark.slow
def test_compiled_matches_eager():
    batch = _batch()
    eager = _run(Augment(), 6, *batch)
    fused = _run(Augment(compiled=True), 6, *batch)
    torch.testing.assert_close(fused[0], eager[0], atol=1e-5, rtol=0)
    assert (fused[1] != eager[1]).float().mean() <= 1e-3
    torch.testing.assert_close(fused[2], eager[2], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# given parameters: Augment.apply, parameters, coordinates (the explorer's path)


def test_apply_with_the_drawn_parameters_is_forward():
    aug = Augment()
    x = torch.rand(2, 1, 40, 48, generator=torch.Generator().manual_seed(1))
    lab = torch.randint(0, 5, (2, 40, 48), generator=torch.Generator().manual_seed(2))
    out = aug(x, lab, generator=torch.Generator().manual_seed(7))
    draws = aug._draw(2, torch.Generator().manual_seed(7), 40, 48)
    again = aug.apply(x, lab, None, draws)
    assert torch.equal(out[0], again[0]) and torch.equal(out[1], again[1])


def test_given_parameters_rotate_shift_and_respect_switched_off_parts():
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    quarter = parameters(rotation=90.0)
    rotated = Augment(gray=False).apply(x, None, None, quarter)[0]
    torch.testing.assert_close(rotated[0, 0], torch.rot90(x[0, 0], -1), atol=1e-5, rtol=0)
    unrotated = Augment(gray=False, rotation=False).apply(x, None, None, quarter)[0]
    torch.testing.assert_close(unrotated, x, atol=1e-5, rtol=0)
    shifted = Augment(gray=False).apply(x, None, None, parameters(shift=(5.0, -3.0)))[0]
    torch.testing.assert_close(shifted[0, 0, :-5, 3:], x[0, 0, 5:, :-3], atol=1e-5, rtol=0)


def test_coordinates_are_where_apply_samples():
    """Nearest-neighbour labels that number every pixel: each output pixel holds the input
    pixel at its rounded pull coordinate."""
    h, w = 30, 34
    ids = torch.arange(h * w).reshape(1, h, w)
    draws = parameters(rotation=20.0, shift=(2.5, -1.0),
                       elastic=torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(4),
                                           dtype=torch.float64) * 4)
    aug = Augment(gray=False)
    _, out, _ = aug.apply(torch.zeros(1, 1, h, w), ids, None, draws)
    c = aug.coordinates(draws, (h, w))[0]
    inside = (c[0] >= 0) & (c[0] <= h - 1) & (c[1] >= 0) & (c[1] <= w - 1)
    r = torch.floor(c + 0.5).long()
    expected = r[0] * w + r[1]
    assert inside.float().mean() > 0.6
    assert (out[0][inside] == expected[inside]).float().mean() > 0.999


# ----------------------------------------------------------------------------------------------
# zoom (max_scale, beyond the paper)


def test_zoom_is_drawn_last_and_leaves_the_other_draws_alone():
    """A module with max_scale draws every other number exactly as one without it, then the
    zoom, log-uniform within [1 / (1 + max_scale), 1 + max_scale]; without it nothing more."""
    plain = Augment()._draw(64, torch.Generator().manual_seed(5), H, W)
    zoom = Augment(max_scale=0.4)._draw(64, torch.Generator().manual_seed(5), H, W)
    assert "scale" not in plain and set(zoom) == set(plain) | {"scale"}
    assert all(torch.equal(plain[k], zoom[k]) for k in plain)
    z = zoom["scale"]
    assert z.min() >= 1 / 1.4 and z.max() <= 1.4 and z.min() < 0.85 and z.max() > 1.2
    # the next number drawn follows the zoom: it was drawn last
    g = torch.Generator().manual_seed(5)
    Augment()._draw(64, g, H, W)
    assert torch.equal(torch.exp((torch.rand((64,), generator=g, dtype=torch.float64) * 2 - 1)
                                 * math.log1p(0.4)), z)


def test_zoom_about_the_centre_scales_distances_from_it():
    """z = 2: an output pixel at offset v from the centre samples the input at v / 2; a module
    without max_scale ignores a given zoom."""
    h, w = 31, 41
    m = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=torch.float64)
    draws = parameters(scale=2.0)
    c = Augment(gray=False, max_scale=1.0).coordinates(draws, (h, w))[0]
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                                torch.arange(w, dtype=torch.float64), indexing="ij")
    torch.testing.assert_close(c[0], m[0] + (rows - m[0]) / 2, rtol=0, atol=1e-9)
    torch.testing.assert_close(c[1], m[1] + (cols - m[1]) / 2, rtol=0, atol=1e-9)
    x = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(2))
    same = Augment(gray=False).apply(x, None, None, draws)[0]
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)


def test_zoom_keeps_labels_and_weights_aligned_with_the_image():
    """Labels resample by nearest neighbour (their values kept), weights linearly, at the same
    pull coordinates as the image: a magnified disc stays where the image's disc is."""
    h = w = 64
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disc = (((yy - 31.5) ** 2 + (xx - 31.5) ** 2) < 10 ** 2)
    image, labels = disc[None, None].float(), disc[None].to(torch.int64) * 7
    aug = Augment(gray=False, flip=False, shift=False, rotation=False, elastic=False,
                  max_scale=1.0)
    out, lab, wmap = aug.apply(image, labels, disc[None].float(), parameters(scale=1.5))
    assert set(lab.unique().tolist()) == {0, 7}
    area = (lab > 0).sum().item()
    assert abs(area / disc.sum().item() - 1.5 ** 2) < 0.1  # areas grow by z^2
    assert ((out[0, 0] > 0.5) == (lab[0] > 0)).float().mean() > 0.99
    assert ((wmap[0] > 0.5) == (lab[0] > 0)).float().mean() > 0.99


def test_zoom_is_rejected_when_not_a_positive_finite_number():
    with pytest.raises(ValueError, match="max_scale"):
        Augment(max_scale=-0.1)
    with pytest.raises(ValueError, match="scale"):
        parameters(scale=0.0)


@pytest.mark.parametrize("kw, match", [({"elastic": torch.zeros(3, 3)}, "elastic"),
                                       ({"rotation": float("nan")}, "rotation"),
                                       ({"shift": (0.0, float("inf"))}, "shift x"),
                                       ({"gamma": float("inf")}, "gamma")])
def test_parameters_reject_bad_values_naming_them(kw, match):
    with pytest.raises(ValueError, match=match):
        parameters(**kw)
