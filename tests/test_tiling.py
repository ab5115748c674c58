"""Overlap-tile prediction: mirroring, equality with one whole-image pass, TTA, bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetlib.model import UNet, valid_input_size
from unetlib.tiling import (
    _plan,
    default_tile,
    mirror_pad,
    one_pass_tile,
    padded_extent,
    predict_tiled,
    tile_memory,
    tiles_agree,
)


def _net(depth=3, base=8, num_classes=2, padding="valid", in_channels=1, seed=0) -> UNet:
    torch.manual_seed(seed)
    return UNet(in_channels=in_channels, num_classes=num_classes, depth=depth,
                base_channels=base, padding=padding).eval()


def _whole_image_pass(model: UNet, image: torch.Tensor, tile: int) -> torch.Tensor:
    """Reference: one forward pass over the whole mirror-padded image (valid network)."""
    stride, margin = _plan(model.depth, model.padding, tile, None)
    C, H, W = image.shape
    _, top, bottom = padded_extent(H, tile, stride, margin)
    _, left, right = padded_extent(W, tile, stride, margin)
    padded = mirror_pad(image, top, bottom, left, right)
    with torch.no_grad():
        logits = model(padded[None])[0]
    probs = torch.sigmoid(logits) if model.num_classes == 1 else torch.softmax(logits, 0)
    return probs[:, :H, :W]


@pytest.mark.parametrize("shape", [(1, 7), (5, 3), (10, 40), (33, 2)])
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (2, 3, 1, 0), (12, 30, 45, 7)])
def test_mirror_pad_matches_numpy_reflect(shape, pads):
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    t, b, l, r = pads
    ref = np.pad(x, ((0, 0), (t, b), (l, r)), mode="reflect")
    out = mirror_pad(torch.from_numpy(x), t, b, l, r).numpy()
    np.testing.assert_array_equal(out, ref)


def test_default_tile():
    with torch.device("meta"):
        assert default_tile(UNet.paper()) == 572
        assert default_tile(UNet(padding="same")) == 512
    assert default_tile(_net(depth=3)) == 572  # 572 = 4 * 140 + 12 is valid for depth 3
    # five same-padded levels: every full-margin tile agrees, so the default covers the image
    with torch.device("meta"):
        five, four = UNet(padding="same", base_channels=16), UNet(padding="same", depth=4)
        assert default_tile(five, (512, 512)) == 704 and default_tile(five, (300, 200)) == 496
        assert default_tile(five, (512, 512), memory_budget=1) == 512  # does not fit: 512
        assert default_tile(four, (512, 512)) == 512  # four levels: tiles differ, no growing
    stride, margin = _plan(5, "valid", 572, None)
    assert (stride, margin) == (384, 92)


def test_default_tile_covers_the_image_in_one_pass_within_the_memory_budget():
    with torch.device("meta"):
        paper = UNet.paper()
        # 700 -> 516 output, stride 512: one tile for a 512 x 512 frame (684 gives stride 496)
        assert default_tile(paper, (512, 512)) == 700
        assert _plan(5, "valid", 684, None)[0] < 512
        assert default_tile(paper, (300, 200)) == 572  # never below the paper's tile
        big = default_tile(paper, (4096, 4096))  # the 4 GiB default caps it
        assert 572 < big < 4096 and tile_memory(paper, big) <= 4 * 2**30
        assert tile_memory(paper, big + 16) > 4 * 2**30  # the next valid tile would not fit
        assert default_tile(paper, (4096, 4096), memory_budget=1) == 572
        assert default_tile(UNet(padding="same"), (2048, 2048)) == 512  # tile-dependent result


@pytest.mark.parametrize("shape", [(70, 100), (150, 97), (300, 41)])
def test_default_tile_gives_the_same_probabilities_as_the_papers_tile(shape):
    # the stitched result equals one pass over the padded image whatever the tile
    model = _net(depth=3)
    image = torch.randn(1, *shape)
    small = predict_tiled(model, image, tile=60)
    auto = predict_tiled(model, image)
    torch.testing.assert_close(auto, small, rtol=1e-4, atol=1e-5)
    capped = predict_tiled(model, image, memory_budget=1)  # the floor tile, 572, one at a time
    torch.testing.assert_close(capped, small, rtol=1e-4, atol=1e-5)


def test_memory_budget_bounds_one_forward_pass(monkeypatch):
    import unetlib.tiling as tiling

    model, seen = _net(depth=3), []
    original = tiling._predict_once

    def spy(model, x, tile, stride, margin, batch_size, *rest):
        seen.append((tile, batch_size))
        return original(model, x, tile, stride, margin, batch_size, *rest)

    monkeypatch.setattr(tiling, "_predict_once", spy)
    image = torch.randn(1, 1200, 1300)
    for budget in (1, 3 * tile_memory(model, 572), 9 * tile_memory(model, 572)):
        predict_tiled(model, image, batch_size=8, memory_budget=budget)
        tile, batch = seen[-1]
        assert tile == default_tile(model, (1200, 1300), budget)
        assert batch == max(1, min(8, budget // tile_memory(model, tile)))
        assert batch == 1 or batch * tile_memory(model, tile) <= budget
    assert seen[0] == (572, 1)  # nothing fits: the paper's tile, one at a time
    assert _plan(3, "valid", seen[-1][0], None)[0] >= 1300  # enough budget: one covering tile


EQUALITY_CASES = [
    # depth, tile, image (H, W), num_classes, batch_size
    (3, 60, (70, 100), 2, 4),
    (3, 60, (37, 23), 3, 1),
    (3, 92, (150, 97), 2, 3),
    (2, 26, (31, 64), 1, 5),
    (4, 140, (100, 203), 2, 2),
]


@pytest.mark.parametrize("depth, tile, hw, num_classes, batch_size", EQUALITY_CASES)
def test_tiled_equals_whole_image_pass(depth, tile, hw, num_classes, batch_size):
    model = _net(depth=depth, num_classes=num_classes)
    image = torch.randn(1, *hw)
    tiled = predict_tiled(model, image, tile=tile, batch_size=batch_size)
    assert tiled.shape == (num_classes, *hw) and tiled.dtype == torch.float32
    ref = _whole_image_pass(model, image, tile)
    torch.testing.assert_close(tiled, ref, atol=1e-5, rtol=0)
    # several tiles were used, so the equality is not trivial
    stride, _ = _plan(depth, "valid", tile, None)
    assert max(hw) > stride
    if num_classes > 1:
        torch.testing.assert_close(tiled.sum(0), torch.ones(hw), atol=1e-5, rtol=0)


def test_paper_geometry_700x1000_equals_whole_image():
    """Depth 5 with the default 572 tile (388 output, 384 stride) on a 700x1000 image, using a
    2-channel-wide net to stay cheap; equal to one pass over the mirror-padded image."""
    model = _net(depth=5, base=2)
    image = torch.randn(700, 1000)
    tiled = predict_tiled(model, image, batch_size=6)
    assert tiled.shape == (2, 700, 1000)
    ref = _whole_image_pass(model, image[None], 572)
    torch.testing.assert_close(tiled, ref, atol=1e-5, rtol=0)


def test_tile_independent_result():
    """Different valid tiles give the same stitched probabilities (all equal the whole pass)."""
    model = _net(depth=3)
    image = torch.randn(1, 80, 90)
    a = predict_tiled(model, image, tile=60)
    b = predict_tiled(model, image, tile=124)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def _same_bn_net(depth: int) -> UNet:
    torch.manual_seed(depth)
    model = UNet(in_channels=1, num_classes=2, depth=depth, base_channels=2, padding="same",
                 batch_norm=True).eval()
    for m in model.modules():  # statistics far from the identity, as a trained network's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


def test_five_level_same_padding_gives_the_same_probabilities_with_any_tile():
    """The five-level default margin (96 px) exceeds the valid network's 92: the stitched
    centres see no zero padding, and tiles of 208 (many per image) to 704 (one) agree exactly.
    With four levels the margin is the valid one's (44) and tiles differ a little."""
    image = torch.randn(1, 300, 260)
    model = _same_bn_net(5)
    tiles = (208, 304, 512, one_pass_tile(300, 5, "same"))
    outs = [predict_tiled(model, image, tile=t) for t in tiles]
    assert [_plan(5, "same", t, None)[1] for t in tiles] == [96] * 4
    for out in [*outs[1:], predict_tiled(model, image)]:  # the default: one pass
        torch.testing.assert_close(out, outs[0], atol=1e-6, rtol=0)
    four = _same_bn_net(4)
    a, b = (predict_tiled(four, image, tile=t) for t in (96, 152))
    assert float((a - b).abs().max()) > 1e-5
    assert all(tiles_agree(5, "same", t, 704) for t in tiles)
    assert not tiles_agree(4, "same", 96, 152)
    assert not tiles_agree(5, "same", 192, 704)  # 192 narrows the margin to 88
    assert tiles_agree(5, "valid", 572, 700)


@pytest.mark.parametrize("size, depth, padding, tile", [
    (512, 5, "same", 704), (512, 5, "valid", 700), (512, 4, "same", 600), (300, 5, "same", 496),
    (1, 3, "same", 44)])
def test_one_pass_tile_is_the_smallest_tile_that_covers_the_image(size, depth, padding, tile):
    assert one_pass_tile(size, depth, padding) == tile
    full = _plan(depth, padding, valid_input_size(2000, depth, padding), None)[1]
    stride, margin = _plan(depth, padding, tile, None)
    assert stride >= size and margin == full
    # every smaller tile narrows the margin or leaves part of the image to a second pass
    smaller = [t for t in range(1, tile) if _valid_same(t, depth, padding)]
    assert all(_plan(depth, padding, t, None)[0] < size or _plan(depth, padding, t, None)[1]
               < full for t in smaller)
    with pytest.raises(ValueError, match="size must be >= 1"):
        one_pass_tile(0, depth, padding)


def _valid_same(tile: int, depth: int, padding: str) -> bool:
    try:
        _plan(depth, padding, tile, None)
    except ValueError:
        return False
    return True


def test_same_padding_single_tile_and_shapes():
    model = _net(depth=3, padding="same")
    image = torch.randn(1, 50, 70)
    out = predict_tiled(model, image, tile=64, margin=8)
    assert out.shape == (2, 50, 70)
    torch.testing.assert_close(out.sum(0), torch.ones(50, 70), atol=1e-5, rtol=0)
    # the tile centre that is kept equals the same-padded net on that mirror-padded window
    window = mirror_pad(image, 8, 8, 8, 8)[:, :64, :64]
    with torch.no_grad():
        ref = torch.softmax(model(window[None])[0], 0)[:, 8:56, 8:56]
    torch.testing.assert_close(out[:, :48, :48], ref, atol=1e-5, rtol=0)
    # the default margin keeps a pool-aligned stride
    stride, margin = _plan(5, "same", 512, None)
    assert (stride, margin) == (320, 96) and stride % 16 == 0


def test_tta_symmetric_input_gives_symmetric_output():
    model = _net(depth=3, num_classes=3)
    a = torch.randn(1, 40, 40)
    sym = a + a.flip(-1)
    sym = sym + sym.flip(-2)
    sym = sym + sym.transpose(-1, -2)  # invariant under all 8 flips/rotations
    out = predict_tiled(model, sym, tile=60, tta=True)
    for k in range(4):
        r = torch.rot90(out, k, dims=(-2, -1))
        torch.testing.assert_close(r, out, atol=1e-6, rtol=0)
        torch.testing.assert_close(r.flip(-1), out, atol=1e-6, rtol=0)
    # without TTA the tile grid breaks the symmetry, so the check above is not vacuous
    plain = predict_tiled(model, sym, tile=60)
    assert (plain - plain.flip(-1)).abs().max() > 1e-4


def test_tta_equivariance_non_square():
    model = _net(depth=3)
    image = torch.randn(1, 45, 70)
    out = predict_tiled(model, image, tile=60, tta=True)
    rotated = predict_tiled(model, torch.rot90(image, 1, dims=(-2, -1)), tile=60, tta=True)
    torch.testing.assert_close(rotated, torch.rot90(out, 1, dims=(-2, -1)), atol=1e-6, rtol=0)
    flipped = predict_tiled(model, image.flip(-2), tile=60, tta=True)
    torch.testing.assert_close(flipped, out.flip(-2), atol=1e-6, rtol=0)


def test_numpy_input_sigmoid_and_training_state_restored():
    model = _net(depth=3, num_classes=1, in_channels=1)
    model.train()
    image = np.random.default_rng(0).integers(0, 255, size=(50, 66)).astype(np.uint8)
    out = predict_tiled(model, image, tile=60)
    assert model.training
    assert out.shape == (1, 50, 66) and ((out >= 0) & (out <= 1)).all()
    ref = predict_tiled(model, torch.from_numpy(image).float(), tile=60)
    torch.testing.assert_close(out, ref)


def test_multichannel_image():
    model = _net(depth=2, in_channels=3)
    out = predict_tiled(model, torch.randn(3, 30, 41), tile=26)
    assert out.shape == (2, 30, 41)
    with pytest.raises(ValueError, match="channels"):
        predict_tiled(model, torch.randn(1, 30, 41), tile=26)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(tile=61), ValueError, "tile=61"),
        (dict(tile=60.0), TypeError, "tile"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(tile=60, margin=3), ValueError, "margin"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        predict_tiled(_net(depth=3), torch.randn(30, 30), **kwargs)


def test_tile_output_smaller_than_pool_alignment():
    # depth 4: input 92 is valid but gives a 4-pixel output, less than the 8-pixel alignment
    with pytest.raises(ValueError, match="tile=92"):
        predict_tiled(_net(depth=4, base=2), torch.randn(30, 30), tile=92)


def test_bad_image():
    with pytest.raises(ValueError, match="image"):
        predict_tiled(_net(depth=3), torch.randn(1, 1, 30, 30), tile=60)
    with pytest.raises(TypeError, match="image"):
        predict_tiled(_net(depth=3), [[0.0]], tile=60)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    model = _net(depth=3)
    image = torch.randn(1, 70, 100)
    ref = predict_tiled(model, image, tile=60)
    out = predict_tiled(model.cuda(), image, tile=60)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), ref, atol=1e-4, rtol=0)
