"""unetlib.elastic against elasticdeform 0.5.1 (the reference), plus its own invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetlib.elastic import MODES, deform_grid, deform_random_grid, displacement_field

elasticdeform = pytest.importorskip("elasticdeform", reason="elasticdeform==0.5.1 is the reference")

TIE_FRACTION = 1e-4  # order 0 may differ only at exact half-pixel ties (float64 summation order)


def _case(seed: int, crop: bool):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(5, 41, size=2))
    p0, p1 = (int(v) for v in rng.integers(1, 6, size=2))
    sigma = float(rng.choice([1.5, 6.0, 25.0]))
    disp = rng.standard_normal((2, p0, p1)) * sigma
    x = rng.random((h, w)).astype(np.float32)
    window = None
    if crop:
        a = int(rng.integers(0, h - 1))
        c = int(rng.integers(0, w - 1))
        window = (
            slice(a, int(rng.integers(a + 1, h + 1))),
            slice(c, int(rng.integers(c + 1, w + 1))),
        )
    return x, disp, window


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("seed,crop", [(0, False), (1, True), (2, False), (3, True)])
def test_parity_with_elasticdeform(mode, order, seed, crop):
    x, disp, window = _case(seed * 7 + order, crop)
    ref = elasticdeform.deform_grid(x, disp, order=order, mode=mode, cval=0.25, crop=window)
    out = deform_grid(
        torch.from_numpy(x), torch.from_numpy(disp), order=order, mode=mode, cval=0.25, crop=window
    )
    assert out.dtype == torch.float32 and tuple(out.shape) == ref.shape
    out = out.numpy()
    if order == 0:
        assert np.mean(out != ref) <= TIE_FRACTION
    else:
        assert np.abs(out - ref).max() <= 1e-4


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
@pytest.mark.parametrize("mode", ["constant", "mirror", "nearest"])
def test_labels_keep_dtype_and_values(dtype, mode):
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 9, size=(37, 29)).astype(np.uint8) * 3 + 1
    disp = rng.standard_normal((2, 3, 4)) * 8
    ref = elasticdeform.deform_grid(labels, disp, order=0, mode=mode, cval=0)
    out = deform_grid(
        torch.from_numpy(labels).to(dtype), torch.from_numpy(disp), order=0, mode=mode
    )
    assert out.dtype == dtype
    values = set(np.unique(labels)) | ({0} if mode == "constant" else set())
    assert set(out.unique().tolist()) <= values
    assert np.mean(out.numpy() != ref) <= TIE_FRACTION


@pytest.mark.parametrize("order", [1, 3])
def test_integer_image_is_rounded_float_result(order):
    """Integers at order > 0: the float result rounded half away from zero and clipped (for
    order 1 exactly elasticdeform; for order 3 elasticdeform quantizes its spline coefficients
    to the integer dtype, which we deliberately do not copy)."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(31, 27)).astype(np.uint8)
    disp = rng.standard_normal((2, 3, 3)) * 6
    ref = elasticdeform.deform_grid(x.astype(np.float64), disp, order=order, mode="mirror")
    out = deform_grid(torch.from_numpy(x), torch.from_numpy(disp), order=order, mode="mirror")
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), np.clip(np.round(ref), 0, 255))


def test_list_of_inputs_with_orders_matches_reference():
    """Image order 3, labels order 0, weight map order 1, one field (as in training)."""
    rng = np.random.default_rng(5)
    img = rng.random((48, 40)).astype(np.float32)
    lab = rng.integers(0, 5, size=(48, 40)).astype(np.int32)
    wmap = rng.random((48, 40)).astype(np.float64)
    disp = rng.standard_normal((2, 3, 3)) * 10
    refs = elasticdeform.deform_grid([img, lab, wmap], disp, order=[3, 0, 1], mode="mirror")
    outs = deform_grid(
        [torch.from_numpy(img), torch.from_numpy(lab), torch.from_numpy(wmap)],
        torch.from_numpy(disp),
        order=[3, 0, 1],
        mode="mirror",
    )
    assert [o.dtype for o in outs] == [torch.float32, torch.int32, torch.float64]
    assert np.abs(outs[0].numpy() - refs[0]).max() <= 1e-4
    assert np.mean(outs[1].numpy() != refs[1]) <= TIE_FRACTION
    assert np.abs(outs[2].numpy() - refs[2]).max() <= 1e-9


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", [0, 1, 3])
def test_zero_displacement_is_identity(mode, order):
    x = torch.rand(2, 3, 17, 23)
    out = deform_grid(x, torch.zeros(2, 3, 5), order=order, mode=mode)
    torch.testing.assert_close(out, x, atol=2e-6, rtol=0)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_batch_equals_per_sample(order):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 21, 26, generator=g)
    disp = torch.randn(3, 2, 3, 4, generator=g, dtype=torch.float64) * 5
    out = deform_grid(x, disp, order=order, mode="reflect")
    for i in range(3):
        for c in range(2):
            single = deform_grid(x[i, c], disp[i], order=order, mode="reflect")
            torch.testing.assert_close(out[i, c], single, atol=0, rtol=0)
    shared = deform_grid(x, disp[1], order=order, mode="reflect")  # one field for all
    torch.testing.assert_close(shared[1], out[1], atol=0, rtol=0)


def test_displacement_field_hits_control_values_at_corners():
    """Control points sit on the image corners; component 0 moves rows (pull mapping)."""
    disp = torch.randn(2, 3, 3, dtype=torch.float64) * 4
    d = displacement_field(disp, (33, 21))[0]
    for i, r in ((0, 0), (2, 32)):
        for j, c in ((0, 0), (2, 20)):
            torch.testing.assert_close(d[:, r, c], disp[:, i, j])
    # a constant shift of +2 rows pulls from 2 rows further down
    x = torch.arange(20.0 * 10).reshape(20, 10)
    shift = torch.zeros(2, 3, 3, dtype=torch.float64)
    shift[0] = 2
    out = deform_grid(x, shift, order=1, mode="constant", cval=-1)
    torch.testing.assert_close(out[:-2], x[2:])
    assert (out[-2:] == -1).all()


def test_random_grid_is_seeded_and_matches_explicit_displacement():
    x = torch.rand(2, 1, 30, 30)
    a = deform_random_grid(x, sigma=10, points=(3, 4), generator=torch.Generator().manual_seed(7))
    b = deform_random_grid(x, sigma=10, points=(3, 4), generator=torch.Generator().manual_seed(7))
    c = deform_random_grid(x, sigma=10, points=(3, 4), generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    disp = torch.randn(2, 2, 3, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(a, deform_grid(x, disp * 10), atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_floating_dtypes(dtype):
    rng = np.random.default_rng(3)
    x = rng.random((19, 24))
    disp = rng.standard_normal((2, 3, 3)) * 5
    ref = elasticdeform.deform_grid(x, disp, order=3, mode="mirror")
    out = deform_grid(torch.from_numpy(x).to(dtype), torch.from_numpy(disp), mode="mirror")
    assert out.dtype == dtype
    tol = {torch.float64: 1e-9, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    assert np.abs(out.double().numpy() - ref).max() <= tol


@pytest.mark.parametrize(
    "kwargs,err",
    [
        ({"order": 2}, ValueError),
        ({"mode": "grid-wrap"}, ValueError),
        ({"crop": (slice(0, 50), slice(None))}, ValueError),
        ({"displacement": torch.zeros(3, 3, 3)}, ValueError),
        ({"displacement": torch.zeros(5, 2, 3, 3)}, ValueError),
        ({"X": torch.zeros(3, 10, 10)}, ValueError),
        ({"X": [torch.zeros(10, 10), torch.zeros(10, 11)]}, ValueError),
        ({"X": [torch.zeros(10, 10)], "order": [3, 0]}, ValueError),
        ({"displacement": [[0.0]]}, TypeError),
    ],
)
def test_bad_input_raises(kwargs, err):
    args = {"X": torch.zeros(2, 1, 10, 10), "displacement": torch.zeros(2, 3, 3)} | kwargs
    with pytest.raises(err):
        deform_grid(**args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 64, 48, generator=g)
    lab = torch.randint(0, 9, (2, 1, 64, 48), generator=g)
    disp = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64) * 10
    cpu = deform_grid([x, lab], disp, order=[3, 0], mode="mirror")
    gpu = deform_grid([x.cuda(), lab.cuda()], disp.cuda(), order=[3, 0], mode="mirror")
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-5, rtol=0)
    assert (gpu[1].cpu() != cpu[1]).float().mean() <= TIE_FRACTION


@pytest.mark.slow
def test_compiled_path_matches_eager():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 40, 36, generator=g)
    lab = torch.randint(0, 9, (2, 1, 40, 36), generator=g, dtype=torch.int32)
    disp = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64) * 6
    eager = deform_grid([x, lab], disp, order=[3, 0], mode="mirror")
    fused = deform_grid([x, lab], disp, order=[3, 0], mode="mirror", compiled=True)
    torch.testing.assert_close(fused[0], eager[0], atol=1e-5, rtol=0)
    assert torch.equal(fused[1], eager[1])


@pytest.mark.parametrize("mode", MODES)
def test_mirror_and_stacked_mapping_match_reference_mapping(mode):
    """The eager path maps both axes at once (``mirror``: one remainder); it must agree with
    elasticdeform's per-axis formulas, also several periods away and on the period edges."""
    from unetlib.elastic import _map_coordinates, _map_stacked

    h, w = 7, 12
    edges = [0.0, h - 1.0, -(h - 1.0), 2 * (h - 1.0), 3 * (h - 1.0) + 0.25, -0.5, h - 0.5]
    cy = torch.cat([torch.tensor(edges, dtype=torch.float64), torch.linspace(-40, 40, 101)])
    cx = torch.linspace(-55.3, 61.7, cy.numel(), dtype=torch.float64)
    cy, cx = cy.view(1, 1, -1), cx.view(1, 1, -1)
    ref_y, ref_x, ref_valid = _map_coordinates(cy, cx, mode, h, w)
    mc, valid = _map_stacked(cy, cx, mode, h, w)
    torch.testing.assert_close(mc[:, 0], ref_y, atol=1e-12, rtol=0)
    torch.testing.assert_close(mc[:, 1], ref_x, atol=1e-12, rtol=0)
    assert (valid is None) == (mode != "constant")
    if valid is not None:
        assert torch.equal(valid, ref_valid)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", [0, 1, 3])
def test_blocked_eager_sampler_matches_reference_sampler(monkeypatch, mode, order):
    """Eager path in many row blocks (large displacements, per-sample fields, two channels)
    against the straightforward 16-gather sampler it replaces."""
    import unetlib.elastic as el

    monkeypatch.setattr(el, "_EAGER_BLOCK", 3 * 2 * 37)  # a few rows per block
    g = torch.Generator().manual_seed(4)
    n, h, w = 3, 29, 37
    x = torch.rand(n, 2, h, w, generator=g)
    disp = torch.randn(n, 2, 3, 4, generator=g, dtype=torch.float64) * 15
    out = deform_grid(x, disp, order=order, mode=mode, cval=0.5)
    ay = el._cached("control", (h, 0, h, 3), torch.float64, x.device)
    ax = el._cached("control", (w, 0, w, 4), torch.float64, x.device)
    cy, cx = el._coordinates(disp, ay, ax, 0, 0)
    coef = el._prefilter(x, order, torch.float32)
    ref = el._sample(coef, cy, cx, order, mode, 0.5, h, w)
    if order == 0:
        assert (out != ref).float().mean() <= TIE_FRACTION
    else:
        torch.testing.assert_close(out, ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("mode", ["mirror", "constant", "reflect"])
def test_batch_of_images_and_labels_matches_reference_per_sample(mode):
    """The training workload in small: per-sample fields, image order 3 + uint8 labels order 0."""
    g = torch.Generator().manual_seed(9)
    n, h, w = 3, 70, 58
    img = torch.rand(n, 1, h, w, generator=g)
    lab = torch.randint(0, 255, (n, 1, h, w), generator=g, dtype=torch.uint8)
    disp = torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64) * 10
    out_img, out_lab = deform_grid([img, lab], disp, order=[3, 0], mode=mode)
    assert out_lab.dtype == torch.uint8
    for i in range(n):
        ref_img, ref_lab = elasticdeform.deform_grid(
            [img[i, 0].numpy(), lab[i, 0].numpy()], disp[i].numpy(), order=[3, 0], mode=mode
        )
        assert np.abs(out_img[i, 0].numpy() - ref_img).max() <= 1e-5
        assert np.mean(out_lab[i, 0].numpy() != ref_lab) <= TIE_FRACTION


@pytest.mark.parametrize("shape", [(2, 3), (5, 40), (17, 130), (63, 64), (200, 301)])
def test_banded_prefilter_equals_exact_inverse(shape):
    """The CPU float32 prefilter (truncated FIR as banded blocks, padded once for both axes,
    reflect padding or the index fallback for short axes) against the exact dense inverse."""
    import unetlib.elastic as el

    g = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(2, 3, *shape, generator=g)
    coef = el._prefilter(x, 3, torch.float32)
    h, w = shape
    py = el._cached("prefilter", (h,), torch.float64, x.device)
    px = el._cached("prefilter", (w,), torch.float64, x.device)
    exact = py @ x.double() @ px.T
    assert coef.shape == (2, 3, h + 4, w + 4) and coef.is_contiguous()
    assert (coef.double() - exact).abs().max() <= 3e-6


def test_parity_on_a_large_image_with_many_blocks():
    """Several prefilter blocks and sampler row blocks, against the reference."""
    rng = np.random.default_rng(11)
    x = rng.random((157, 211)).astype(np.float32)
    disp = rng.standard_normal((2, 3, 3)) * 10
    for mode in ("mirror", "constant"):
        ref = elasticdeform.deform_grid(x, disp, order=3, mode=mode)
        out = deform_grid(torch.from_numpy(x), torch.from_numpy(disp), order=3, mode=mode)
        assert np.abs(out.numpy() - ref).max() <= 1e-5


@pytest.mark.parametrize("order", [1, 3])
def test_horner_coefficients_are_the_spline_weights(order):
    """The eager sampler's polynomial coefficients expand the one weight definition."""
    import unetlib.elastic as el

    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    a = el._weight_matrix(order, torch.float64, x.device)[:, :, 0]  # (power, tap)
    horner = sum(a[k][:, None] * x**k for k in range(order + 1))
    direct = torch.stack(el._spline_weights(x, order))
    torch.testing.assert_close(horner, direct, atol=1e-15, rtol=0)
    torch.testing.assert_close(direct.sum(0), torch.ones_like(x), atol=1e-15, rtol=0)


def test_mirror_padding_is_the_tiling_one():
    """The fast path (torch reflect) and the wide-pad fallback give tiling.mirror_pad's numbers."""
    import unetlib.elastic as el
    from unetlib.tiling import mirror_pad

    x = torch.arange(2 * 5 * 4, dtype=torch.float32).reshape(2, 1, 5, 4)
    for pads in [(0, 0, 0, 0), (2, 2, 2, 2), (4, 1, 3, 0), (9, 17, 7, 12)]:
        assert torch.equal(el._mirror_pad(x, *pads), mirror_pad(x, *pads)), pads
    labels = x > 20
    assert torch.equal(el._mirror_pad(labels, 2, 2, 2, 2), mirror_pad(labels, 2, 2, 2, 2))


# ----------------------------------------------------------------------------------------------
# the Simard-style Gaussian field (beyond the paper, for the elastic comparison)


@pytest.mark.parametrize("shape,sigma,crop", [((40, 57), 3.0, None), ((64, 64), 10.0, None),
                                              ((31, 90), 20.0, (slice(4, 25), slice(10, 80))),
                                              ((12, 9), 0.7, None)])
def test_gaussian_field_is_scipys_constant_mode_gaussian_filter(shape, sigma, crop):
    from scipy.ndimage import gaussian_filter

    from unetlib.elastic import gaussian_field

    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, (3, 2) + shape)
    field = gaussian_field(torch.from_numpy(noise), alpha=37.0, sigma=sigma, crop=crop)
    ref = 37.0 * np.stack([[gaussian_filter(c, sigma, mode="constant", truncate=4.0) for c in n]
                           for n in noise])
    if crop is not None:
        ref = ref[..., crop[0], crop[1]]
    np.testing.assert_allclose(field.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 3])
def test_gaussian_field_deformation_is_scipy_map_coordinates_inside_the_image(order):
    """Inside the image every mode agrees; there the warp is scipy's spline interpolation at
    ``x + d(x)`` (mirror prefilter), to float64 rounding."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    from unetlib.elastic import deform_gaussian_field

    rng = np.random.default_rng(1)
    h, w = 48, 40
    x = rng.random((h, w))
    noise = rng.uniform(-1, 1, (2, h, w))
    alpha, sigma = 60.0, 4.0
    out = deform_gaussian_field(torch.from_numpy(x), alpha, sigma, order=order, mode="mirror",
                                noise=torch.from_numpy(noise)).numpy()
    d = [alpha * gaussian_filter(c, sigma, mode="constant", truncate=4.0) for c in noise]
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = gy + d[0], gx + d[1]
    ref = map_coordinates(x, [cy, cx], order=order, mode="mirror")
    inside = (cy >= 0) & (cy <= h - 1) & (cx >= 0) & (cx <= w - 1)
    assert inside.mean() > 0.8 and np.abs(d).max() > 2  # a real deformation, mostly inside
    np.testing.assert_allclose(out[inside], ref[inside], rtol=0, atol=1e-9)


def test_gaussian_field_batch_labels_and_seeding():
    from unetlib.elastic import deform_gaussian_field

    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.random((3, 1, 30, 34)).astype(np.float32))
    lab = torch.from_numpy(rng.integers(0, 5, (3, 1, 30, 34)).astype(np.int32))
    a = deform_gaussian_field([x, lab], 200.0, 5.0, order=[3, 0], mode="mirror",
                              generator=torch.Generator().manual_seed(4))
    b = deform_gaussian_field([x, lab], 200.0, 5.0, order=[3, 0], mode="mirror",
                              generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[1].dtype == torch.int32 and set(a[1].unique().tolist()) <= set(range(5))
    assert not torch.equal(a[0][0], a[0][1])  # one field per sample
    noise = torch.rand((3, 2, 30, 34), generator=torch.Generator().manual_seed(4),
                       dtype=torch.float64) * 2 - 1
    for i in range(3):  # a batch is its samples one by one
        one = deform_gaussian_field(x[i, 0], 200.0, 5.0, mode="mirror", noise=noise[i])
        torch.testing.assert_close(one, a[0][i, 0], rtol=0, atol=1e-6)
    same = deform_gaussian_field(x, 0.0, 5.0, mode="mirror")
    torch.testing.assert_close(same, x, rtol=0, atol=1e-6)  # alpha = 0 is the identity


@pytest.mark.parametrize("kwargs, message", [({"alpha": -1.0}, "alpha"),
                                             ({"sigma": float("nan")}, "sigma"),
                                             ({"noise": torch.zeros(2, 5, 5)}, "noise"),
                                             ({"order": 2}, "order")])
def test_gaussian_field_bad_input_names_the_argument(kwargs, message):
    from unetlib.elastic import deform_gaussian_field

    with pytest.raises(ValueError, match=message):
        deform_gaussian_field(torch.zeros(8, 9), **kwargs)


def test_default_gaussian_field_has_the_papers_root_mean_square_displacement():
    """The defaults (alpha 1000, sigma 20) were chosen so: on 256-pixel crops the Simard-style
    field moves pixels as far, on average, as the paper's 3 x 3 grid with sigma 10 (about 8 px),
    so the elastic comparison changes the field's shape, not its strength."""
    import inspect

    from unetlib.elastic import deform_gaussian_field, gaussian_field

    defaults = inspect.signature(deform_gaussian_field).parameters
    alpha, sigma = defaults["alpha"].default, defaults["sigma"].default
    g = torch.Generator().manual_seed(0)
    grid = displacement_field(torch.randn((400, 2, 3, 3), generator=g, dtype=torch.float64) * 10,
                              (256, 256))
    noise = torch.rand((40, 2, 256, 256), generator=g, dtype=torch.float64) * 2 - 1
    simard = gaussian_field(noise, alpha, sigma)
    rms_grid, rms_simard = (f.pow(2).mean().sqrt().item() for f in (grid, simard))
    assert 7.5 < rms_grid < 8.7
    assert abs(rms_simard / rms_grid - 1) < 0.08
    # and the fields differ in shape: the Simard field bends over ~20 px, the grid over ~128
    def roughness(f):
        return (f[..., 1:, :] - f[..., :-1, :]).pow(2).mean().sqrt().item()
    assert roughness(simard) > 2 * roughness(grid)
