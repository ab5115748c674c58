"""UNet: paper architecture, size arithmetic, variants, init statistics, checkpoints."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from unetlib.model import (
    UNet,
    center_crop,
    load_checkpoint,
    output_size,
    save_checkpoint,
    valid_input_size,
)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _conv_layers(m: nn.Module) -> list[nn.Module]:
    return [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.ConvTranspose2d))]


# ---------------------------------------------------------------- the paper's network


@pytest.fixture(scope="module")
def paper_net() -> UNet:
    torch.manual_seed(0)
    return UNet.paper()


def test_paper_parameter_and_layer_count(paper_net):
    assert _n_params(paper_net) == 31_030_658
    assert len(_conv_layers(paper_net)) == 23
    assert not any(isinstance(x, nn.BatchNorm2d) for x in paper_net.modules())
    assert paper_net.config == {
        "in_channels": 1, "num_classes": 2, "depth": 5, "base_channels": 64,
        "padding": "valid", "batch_norm": False, "dropout": 0.5, "up_mode": "transpose",
        "input_mean": 0.0, "input_std": 1.0,
    }


def test_paper_shapes_and_skip_crops():
    """572 -> 388 and the crops of Fig. 1 (568->392, 280->200, 136->104, 64->56), on the meta
    device so that no 31M-parameter forward pass is computed."""
    with torch.device("meta"):
        net = UNet.paper()
        crops = []
        for conv in net.up_convs:
            conv.register_forward_pre_hook(lambda m, a: crops.append(a[0].shape[-1]))
        skips = []
        for block in net.down:
            block.register_forward_hook(lambda m, a, out: skips.append(out.shape[-1]))
        y = net(torch.empty(1, 1, 572, 572))
    assert tuple(y.shape) == (1, 2, 388, 388)
    assert skips == [568, 280, 136, 64, 28]
    assert net.output_size(572) == 388


def test_paper_init_statistics(paper_net):
    """Gaussian init with std sqrt(2/N), N = k*k*C_in; checked on layers with >= 100k weights."""
    checked = 0
    for m in _conv_layers(paper_net):
        w = m.weight.detach().double()
        n = m.kernel_size[0] * m.kernel_size[1] * m.in_channels
        assert torch.count_nonzero(m.bias) == 0
        if w.numel() < 100_000:
            continue
        expected = math.sqrt(2.0 / n)
        assert abs(w.std().item() / expected - 1) < 0.02, (m, w.std().item(), expected)
        assert abs(w.mean().item()) < 0.02 * expected
        checked += 1
    assert checked >= 15
    first = paper_net.down[0][0].weight
    assert abs(first.std().item() / math.sqrt(2 / 9) - 1) < 0.35  # only 576 weights


# ---------------------------------------------------------------- size arithmetic


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_output_size_matches_closed_form(depth):
    L = depth - 1
    for b in range(5, 40):
        inp = 2**L * b + 4 * (2**L - 1)
        try:
            out = output_size(inp, depth)
        except ValueError:
            continue
        assert out == 2**L * (b - 4) - 4 * (2**L - 1)
        assert inp - out == 4 * (3 * 2**L - 2)


@pytest.mark.parametrize("up_mode", ["transpose", "bilinear"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_receptive_field_is_what_autograd_sees(depth, padding, up_mode):
    """The traced field equals the input rows that the gradients of output pixels reach, one
    pixel of each position in the pooling grid (average pools: a max-pool's gradient reaches
    only its maximum, the same field)."""
    from unetlib.model import receptive_field

    net = UNet(depth=depth, base_channels=1, padding=padding, dropout=0.0,
               up_mode=up_mode).double().eval()
    net.pool = torch.nn.AvgPool2d(2)
    for p in net.parameters():  # positive weights: no contribution cancels to zero
        torch.nn.init.uniform_(p, 0.1, 0.2)
    n = net.valid_input_size(8 * 2**depth + 40)
    x = torch.zeros(1, 1, 8, n, dtype=torch.double, requires_grad=True)
    x_full = torch.nn.functional.pad(x, (0, 0, 0, n - 8), mode="replicate")
    y = net(x_full)[0, 0]
    period = 2 ** (depth - 1)
    mid = y.shape[-1] // 2
    widths = []
    for col in range(mid, mid + period):
        (g,) = torch.autograd.grad(y[y.shape[0] // 2, col], x, retain_graph=True)
        reached = g[0, 0].abs().sum(0).nonzero().flatten()
        widths.append(int(reached.max() - reached.min() + 1))
    assert receptive_field(depth, padding, up_mode) == (min(widths), max(widths))


def test_receptive_field_of_the_paper_and_the_quick_network():
    from unetlib.model import receptive_field

    assert receptive_field(5, "valid") == (188, 204)  # wider than 572 - 388 + 1: the pools
    assert receptive_field(5, "same") == (188, 204)
    assert receptive_field(4, "same") == (92, 100)  # the quick profile's four levels
    with pytest.raises(ValueError, match="up_mode"):
        receptive_field(4, "same", "nearest")


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("depth", [2, 3, 5])
def test_valid_input_size_modes(depth, padding):
    valid = set()
    for s in range(1, 700):
        try:
            output_size(s, depth, padding)
            valid.add(s)
        except ValueError:
            pass
    assert valid
    for s in range(1, 650):
        up = valid_input_size(s, depth, padding, mode="up")
        assert up in valid and up >= s and not any(s <= v < up for v in valid)
        near = valid_input_size(s, depth, padding, mode="nearest")
        assert near in valid
        if s >= min(valid):
            down = valid_input_size(s, depth, padding, mode="down")
            assert down in valid and down <= s and not any(down < v <= s for v in valid)
            assert abs(near - s) == min(abs(up - s), abs(down - s))
        else:
            with pytest.raises(ValueError, match="size"):
                valid_input_size(s, depth, padding, mode="down")


@pytest.mark.parametrize(
    "size, padding, match",
    [(573, "valid", "572 and 588"), (100, "valid", "smallest valid input is 188"),
     (500, "same", "divisible by"), (0, "same", "input_size")],
)
def test_invalid_size_errors(size, padding, match):
    with pytest.raises(ValueError, match=match):
        output_size(size, 5, padding)


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        UNet(padding="reflect")
    with pytest.raises(ValueError, match="up_mode"):
        UNet(up_mode="nearest")
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)
    with pytest.raises(ValueError, match="dropout"):
        UNet(dropout=1.0)
    with pytest.raises(ValueError, match="mode"):
        valid_input_size(100, mode="sideways")
    with pytest.raises(TypeError, match="input_size"):
        output_size(572.0)


def test_center_crop():
    x = torch.arange(7 * 9).reshape(1, 7, 9)
    c = center_crop(x, (3, 5))
    assert c.shape == (1, 3, 5) and c[0, 0, 0] == x[0, 2, 2]
    with pytest.raises(ValueError, match="size"):
        center_crop(x, 8)


# ---------------------------------------------------------------- small networks, both paddings


SHAPE_CASES = [
    # depth, padding, (H, W)
    (1, "valid", (5, 9)),
    (2, "valid", (18, 22)),
    (3, "valid", (44, 60)),
    (3, "valid", (92, 48)),
    (4, "valid", (92, 108)),
    (3, "same", (4, 12)),
    (3, "same", (32, 20)),
    (4, "same", (64, 24)),
    (5, "same", (16, 48)),
]


@pytest.mark.parametrize("depth, padding, hw", SHAPE_CASES)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_forward_shapes(depth, padding, hw, num_classes):
    net = UNet(in_channels=2, num_classes=num_classes, depth=depth, base_channels=4,
               padding=padding)
    y = net(torch.randn(2, 2, *hw))
    assert tuple(y.shape) == (2, num_classes, net.output_size(hw[0]), net.output_size(hw[1]))
    if padding == "same":
        assert y.shape[-2:] == hw
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_forward_rejects_invalid_size(padding):
    net = UNet(depth=3, base_channels=4, padding=padding)
    with pytest.raises(ValueError, match="height"):
        net(torch.randn(1, 1, 45, 44 if padding == "valid" else 8))
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(1, 3, 44, 44))


VARIANTS = [
    dict(padding="valid"),
    dict(padding="same"),
    dict(padding="valid", batch_norm=True),
    dict(padding="same", batch_norm=True, up_mode="bilinear"),
    dict(padding="valid", up_mode="bilinear", dropout=0.0),
]


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_variants_gradients_finite(kwargs):
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8, num_classes=2, **kwargs)
    size = 60 if kwargs["padding"] == "valid" else 32
    x = torch.randn(2, 1, size, size)
    y = net(x)
    loss = y.logsumexp(1).mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())
    if kwargs.get("batch_norm"):
        assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d)
                   and m.kernel_size == (3, 3))


def test_variant_parameter_counts():
    base = UNet(depth=3, base_channels=8)
    bn = UNet(depth=3, base_channels=8, batch_norm=True)
    bil = UNet(depth=3, base_channels=8, up_mode="bilinear")
    n_conv3 = sum(1 for m in base.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert n_conv3 == 10
    # BatchNorm: conv biases dropped, gamma+beta added -> +1 parameter per channel
    n_ch = sum(m.out_channels for m in base.modules()
               if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert _n_params(bn) == _n_params(base) + n_ch
    # bilinear + 1x1 conv (c_in * c_out + c_out) instead of a 2x2 transpose (4 c_in c_out + c_out)
    ups = [(16, 8), (32, 16)]
    assert _n_params(base) - _n_params(bil) == sum(3 * ci * co for ci, co in ups)


def test_dropout_train_vs_eval():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8, dropout=0.5)
    x = torch.randn(1, 1, 60, 60)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=4, batch_norm=True, num_classes=3, up_mode="bilinear")
    net.train()
    net(torch.randn(2, 1, 44, 44))  # update BatchNorm running statistics
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.99)
    net(torch.randn(1, 1, 44, 44)).sum().backward()
    opt.step()
    path = tmp_path / "sub" / "ckpt.pt"
    save_checkpoint(path, net, epoch=3, history=[0.5, 0.25], optimizer=opt.state_dict())
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    raw = torch.load(path, weights_only=True)
    assert raw["config"] == net.config
    loaded, extra = load_checkpoint(path)
    assert extra["epoch"] == 3 and extra["history"] == [0.5, 0.25]
    assert not loaded.training
    net.eval()
    x = torch.randn(1, 1, 60, 60)
    assert torch.equal(loaded(x), net(x))
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.99)
    opt2.load_state_dict(extra["optimizer"])


def test_interrupted_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    net = UNet(depth=2, base_channels=2)
    path = tmp_path / "ckpt.pt"
    old = os.umask(0o022)
    try:
        save_checkpoint(path, net, epoch=1)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    before = path.read_bytes()

    def cut(obj, f):  # the machine stops half-way through writing the new checkpoint
        f.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", cut)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, net, epoch=2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    assert load_checkpoint(path)[1] == {"epoch": 1}


def test_checkpoint_rejects_non_plain_extra(tmp_path):
    net = UNet(depth=2, base_channels=2)
    with pytest.raises(TypeError, match="extra"):
        save_checkpoint(tmp_path / "c.pt", net, config=object())
    assert not (tmp_path / "c.pt").exists()


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)


@pytest.mark.parametrize("change, message", [
    ({"base_channels": 10**6}, "do not match"),  # would allocate terabytes if built first
    ({"depth": 2}, "do not match"),
    ({"padding": "full"}, "configuration is invalid"),
    ({"widths": 3}, "configuration is invalid"),
])
def test_a_checkpoint_whose_config_lies_is_refused_before_allocating(tmp_path, change, message):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, UNet(depth=3, base_channels=4))
    raw = torch.load(path, weights_only=True)
    raw["config"] = {**raw["config"], **change}
    torch.save(raw, path)
    with pytest.raises(ValueError, match=f"ckpt.pt: .*{message}"):
        load_checkpoint(path)


def test_top_level_exports():
    import unetlib

    assert unetlib.UNet is UNet
    assert unetlib.output_size is output_size
    assert unetlib.valid_input_size is valid_input_size
    from unetlib import predict_tiled  # noqa: F401


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_matches_cpu():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8).eval()
    x = torch.randn(1, 1, 92, 92)
    ref = net(x)
    out = net.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_input_standardisation_is_applied_and_saved(tmp_path):
    from unetlib.model import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    plain = UNet(depth=2, base_channels=4, padding="same", dropout=0.0)
    scaled = UNet(depth=2, base_channels=4, padding="same", dropout=0.0, input_mean=0.46,
                  input_std=0.04)
    scaled.load_state_dict(plain.state_dict())
    x = 0.46 + 0.04 * torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(scaled(x), plain((x - 0.46) / 0.04), atol=1e-5)
        assert not torch.allclose(scaled(x), plain(x), atol=1e-3)
    save_checkpoint(tmp_path / "m.pt", scaled)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert (loaded.input_mean, loaded.input_std) == (pytest.approx(0.46), pytest.approx(0.04))
    with torch.no_grad():
        assert torch.allclose(loaded(x), scaled(x), atol=1e-6)


@pytest.mark.parametrize("mean, std", [(0.0, 0.0), (0.0, -1.0), (float("nan"), 1.0)])
def test_input_standardisation_rejects_bad_values(mean, std):
    with pytest.raises(ValueError, match="input_"):
        UNet(depth=2, base_channels=4, input_mean=mean, input_std=std)
