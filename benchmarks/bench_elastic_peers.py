"""Elastic deformation of one batch by every peer library, side by side with unetlib (CPU).

Workload: a batch of 8 images 512x512 float32 (``torch.rand``, seeded generator) with uint8 label
maps (random integers 0..254), 2 torch threads (``--threads``; also ``cv2.setNumThreads`` and
SimpleITK's global thread count). Every method draws one random field PER SAMPLE; images are
interpolated with order 3 and labels with nearest neighbour (order 0) where the library offers
it (each row says what it used), borders mirrored where the library offers it. Each library's
input containers (NumPy views, ``tv_tensors``, MONAI dicts, TorchIO ``Subject`` objects) are
built once, outside the timing; the timed call is the transform itself, as a training loop
would call it. Timing is interleaved round-robin (a shared machine's load hits all rows
alike), after ``--warmup`` untimed rounds; the medians are reported.

Rows and their settings:

* ``unetlib``: ``deform_grid([image, labels], disp, order=[3, 0], mode="mirror")`` on the whole
  (8, 1, 512, 512) batch; ``disp`` (8, 2, 3, 3) float64 ~ N(0, 10^2): the paper's 3x3 grid,
  sigma 10 px, one grid per sample. Exact (the paper's / elasticdeform's numbers).
* ``elasticdeform 0.5.1``: ``elasticdeform.deform_grid([x, l], d, order=[3, 0], mode="mirror")``
  per sample, sequentially in one thread, on the SAME displacements. Exact; its output is
  compared with unetlib's (max abs image difference, fraction of differing labels).
* ``torchvision v2.ElasticTransform``: its defaults, alpha=50, sigma=5 (Gaussian-smoothed
  per-pixel noise), image bilinear, ``tv_tensors.Mask`` nearest, fill 0; one sample per call.
* ``kornia RandomElasticTransform``: ``AugmentationSequential(RandomElasticTransform(p=1.0,
  padding_mode="reflection"), data_keys=["input", "mask"])`` on the whole batch (one noise field
  per sample, ``same_on_batch=False``); its defaults kernel 63x63, sigma 32, alpha 1 (in
  normalised coordinates); image bilinear (``elastic_transform2d`` offers bilinear or nearest
  only), the container resamples the mask nearest with the same field.
* ``MONAI Rand2DElasticd``: keys image/label, ``mode=("bicubic", "nearest")``, ``prob=1``,
  ``padding_mode="reflection"``, ``spacing=(256, 256)``: control points 256 px apart, about the
  spacing of the paper's 3x3 grid over 512 px (MONAI adds a ring around the image: a 6x6 grid,
  upsampled by bicubic convolution and centre-cropped); ``magnitude_range=(10, 10)``: offsets
  N(0, 1) * 10, i.e. N(0, 10^2) px like the paper. One sample per call.
* ``TorchIO RandomElasticDeformation``: a cubic B-spline field (SimpleITK), ``Subject(image=
  ScalarImage((1, 512, 512, 1)), label=LabelMap(...))``, ``image_interpolation="bspline"``
  (cubic B-spline), labels nearest (automatic for a ``LabelMap``); defaults otherwise:
  ``num_control_points=7`` per axis (grid spacing 512/4 = 128 px), ``locked_borders=2`` (the
  outer two rings fixed, so a 3x3 interior moves), ``max_displacement=7.5`` (uniform in
  [-7.5, 7.5) px per axis); outside the image the sample's minimum. One subject per call.
* ``albumentations ElasticTransform``: per image (NumPy HxW), ``interpolation=cv2.INTER_CUBIC``
  (bicubic convolution, not a B-spline), ``mask_interpolation=cv2.INTER_NEAREST``,
  ``border_mode=cv2.BORDER_REFLECT_101`` (= mirror), ``p=1``; its defaults alpha=1, sigma=50.
* ``batchgeneratorsv2 SpatialTransform`` (nnU-Net's augmentation): elastic deformation only
  (``p_elastic_deform=1``, ``p_rotation=p_scaling=0``, ``random_crop=False``, patch (512, 512)),
  ``mode_image="bicubic"`` (grid_sample's bicubic convolution), ``mode_seg="nearest"``, reflection
  padding for both; per sample, as nnU-Net applies it. Its default ``elastic_deform_scale``
  (0, 0.2) (Gaussian sigma up to 20% of the patch); its default ``elastic_deform_magnitude``
  (0, 0.2) is in pixels, i.e. no visible deformation, so it is set to 18 px, the median largest
  per-axis displacement of the paper's field over 512x512 (the time does not depend on it).

Every row's output is checked: shape equal to the input's, image finite, and ``labels_kept``:
the label values are a subset of the input's, both on the timed batch and on a probe batch whose
labels are even numbers only (so that any interpolation between labels shows up as odd values).
The probe repeats sample 0 in every slot, so ``per_sample_fields`` records whether the samples
really got different fields. A peer that is not importable is an error (install the peers with
``make bench``) unless ``--skip`` names it.

Usage (the peers are installed only in .venv-bench):
    .venv-bench/bin/python benchmarks/bench_elastic_peers.py --out results.json
    python benchmarks/bench_elastic_peers.py --dry-run --skip kornia monai torchio \\
        albumentations batchgeneratorsv2 --out /tmp/peers.json
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network version check on import

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unetlib.elastic import deform_grid  # noqa: E402
from unetlib.provenance import command_line, hardware, write_json_atomic  # noqa: E402

GRID_SIGMA = 10.0  # px, the paper's control-point displacement sigma (3x3 grid)
BGV2_MAGNITUDE = 18.0  # px: median largest per-axis displacement of the paper's field at 512^2
MONAI_SPACING = 256  # px between MONAI's control points (the paper's 3x3 grid: ~256 px)

Arrays = tuple[np.ndarray, np.ndarray]  # (images, labels), both (N, 1, H, W)
Runner = tuple[Callable[[], Any], Callable[[Any], Arrays]]  # (timed call, output -> Arrays)


@dataclass(frozen=True)
class Batch:
    image: torch.Tensor  # (N, 1, H, W) float32
    labels: torch.Tensor  # (N, 1, H, W) uint8
    disp: torch.Tensor  # (N, 2, 3, 3) float64, px: unetlib's and elasticdeform's fields


@dataclass(frozen=True)
class Peer:
    name: str  # what --skip takes
    dist: str  # distribution whose version is recorded
    modules: tuple[str, ...]  # imported to check that the peer is there
    method: str  # the row's name; "{version}" is filled in
    exact: bool  # the paper's numbers (elasticdeform's), or only the same kind of operation
    interpolation: str
    field: str
    border: str
    calls: str
    note: str
    make: Callable[[Batch, int], Runner]


def make_batch(n: int, size: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 1, size, size, generator=g)
    labels = torch.randint(0, 255, (n, 1, size, size), generator=g, dtype=torch.uint8)
    disp = torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64) * GRID_SIGMA
    return Batch(image, labels, disp)


def make_probe(batch: Batch) -> Batch:
    """Sample 0 in every slot (fields must still differ), labels rounded down to even values."""
    image = batch.image[:1].expand_as(batch.image).contiguous()
    labels = (batch.labels[:1] // 2 * 2).expand_as(batch.labels).contiguous()
    return Batch(image, labels, batch.disp)


def _pairs(b: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(image, labels) per sample, each (1, H, W)."""
    return list(zip(b.image, b.labels, strict=True))


def _stack(images: Sequence[Any], labels: Sequence[Any]) -> Arrays:
    def arr(x: Any) -> np.ndarray:
        return x.as_tensor().numpy() if hasattr(x, "as_tensor") else np.asarray(x)

    return np.stack([arr(x) for x in images]), np.stack([arr(x) for x in labels])


# ---- one maker per row: builds the inputs once, returns (timed call, unpack) ----


def make_unetlib(b: Batch, threads: int) -> Runner:
    def run() -> list[torch.Tensor]:
        return deform_grid([b.image, b.labels], b.disp, order=[3, 0], mode="mirror")

    return run, lambda out: (out[0].numpy(), out[1].numpy())


def make_elasticdeform(b: Batch, threads: int) -> Runner:
    import elasticdeform

    xs, ls, ds = b.image[:, 0].numpy(), b.labels[:, 0].numpy(), b.disp.numpy()

    def run() -> list[list[np.ndarray]]:
        return [
            elasticdeform.deform_grid([xs[i], ls[i]], ds[i], order=[3, 0], mode="mirror")
            for i in range(len(xs))
        ]

    def unpack(out: list[list[np.ndarray]]) -> Arrays:
        images, labels = _stack([o[0] for o in out], [o[1] for o in out])
        return images[:, None], labels[:, None]

    return run, unpack


def make_torchvision(b: Batch, threads: int) -> Runner:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    tv = v2.ElasticTransform()  # alpha=50, sigma=5, bilinear, fill 0
    samples = [(tv_tensors.Image(x), tv_tensors.Mask(m)) for x, m in _pairs(b)]

    def run() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [tv(x, m) for x, m in samples]

    return run, lambda out: _stack([o[0] for o in out], [o[1] for o in out])


def make_kornia(b: Batch, threads: int) -> Runner:
    import kornia.augmentation as K

    # kornia's own grid_sample calls warn about align_corners on every call; not our business
    warnings.filterwarnings("ignore", message="Default grid_sample and affine_grid behavior")
    aug = K.AugmentationSequential(
        K.RandomElasticTransform(p=1.0, padding_mode="reflection"), data_keys=["input", "mask"]
    )

    def run() -> list[torch.Tensor]:
        return aug(b.image, b.labels)

    return run, lambda out: (out[0].numpy(), out[1].numpy())


def make_monai(b: Batch, threads: int) -> Runner:
    from monai.transforms import Rand2DElasticd

    tf = Rand2DElasticd(
        keys=["image", "label"],
        spacing=(MONAI_SPACING, MONAI_SPACING),
        magnitude_range=(GRID_SIGMA, GRID_SIGMA),
        prob=1.0,
        mode=("bicubic", "nearest"),
        padding_mode="reflection",
    )
    tf.set_random_state(0)
    samples = [{"image": x, "label": m} for x, m in _pairs(b)]

    def run() -> list[dict[str, torch.Tensor]]:
        return [tf(d) for d in samples]

    return run, lambda out: _stack([o["image"] for o in out], [o["label"] for o in out])


def make_torchio(b: Batch, threads: int) -> Runner:
    import SimpleITK as sitk
    import torchio as tio

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    # a 2-D image is one voxel thick: TorchIO zeroes the z displacement but still warns about it
    warnings.filterwarnings("ignore", message="The maximum displacement is larger")
    tf = tio.RandomElasticDeformation(image_interpolation="bspline")
    subjects = [
        tio.Subject(
            image=tio.ScalarImage(tensor=x[..., None]), label=tio.LabelMap(tensor=m[..., None])
        )
        for x, m in _pairs(b)
    ]

    def run() -> list[Any]:
        return [tf(s) for s in subjects]

    def unpack(out: list[Any]) -> Arrays:
        images, labels = _stack([o.image.data for o in out], [o.label.data for o in out])
        return images[..., 0], labels[..., 0]

    return run, unpack


def make_albumentations(b: Batch, threads: int) -> Runner:
    import albumentations as A
    import cv2

    cv2.setNumThreads(threads)
    tf = A.ElasticTransform(
        interpolation=cv2.INTER_CUBIC,
        mask_interpolation=cv2.INTER_NEAREST,
        border_mode=cv2.BORDER_REFLECT_101,
        p=1.0,
    )
    tf.set_random_seed(0)
    xs, ls = b.image[:, 0].numpy(), b.labels[:, 0].numpy()

    def run() -> list[dict[str, np.ndarray]]:
        return [tf(image=x, mask=m) for x, m in zip(xs, ls, strict=True)]

    def unpack(out: list[dict[str, np.ndarray]]) -> Arrays:
        images, labels = _stack([o["image"] for o in out], [o["mask"] for o in out])
        return images[:, None], labels[:, None]

    return run, unpack


def make_batchgeneratorsv2(b: Batch, threads: int) -> Runner:
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    tf = SpatialTransform(
        patch_size=tuple(b.image.shape[-2:]),
        patch_center_dist_from_border=0,
        random_crop=False,
        p_elastic_deform=1.0,
        elastic_deform_magnitude=BGV2_MAGNITUDE,
        p_rotation=0.0,
        p_scaling=0.0,
        mode_image="bicubic",
        mode_seg="nearest",
        padding_mode_image="reflection",
        border_mode_seg="reflection",
    )

    def run() -> list[dict[str, torch.Tensor]]:
        return [tf(image=x, segmentation=m) for x, m in _pairs(b)]

    return run, lambda out: _stack([o["image"] for o in out], [o["segmentation"] for o in out])


GAUSS = "Gaussian-smoothed per-pixel noise"
SPLINE = "cubic B-spline (order 3) / nearest"
PAPER_FIELD = f"3x3 B-spline grid, sigma {GRID_SIGMA:g} px"
PEERS: tuple[Peer, ...] = (
    Peer(
        name="unetlib", dist="unetlib", modules=("unetlib",), method="unetlib", exact=True,
        interpolation=SPLINE, field=PAPER_FIELD, border="mirror", calls="one batch",
        note="the paper's deformation, batched in torch", make=make_unetlib,
    ),
    Peer(
        name="elasticdeform", dist="elasticdeform", modules=("elasticdeform",),
        method="elasticdeform {version}", exact=True, interpolation=SPLINE, field=PAPER_FIELD,
        border="mirror", calls="one sample per call",
        note="reference (C), 1 thread, the same displacements as unetlib",
        make=make_elasticdeform,
    ),
    Peer(
        name="torchvision", dist="torchvision", modules=("torchvision.transforms.v2",),
        method="torchvision v2.ElasticTransform", exact=False,
        interpolation="bilinear / nearest", field=f"{GAUSS}, alpha 50, sigma 5 (defaults)",
        border="constant 0", calls="one sample per call", note="defaults",
        make=make_torchvision,
    ),
    Peer(
        name="kornia", dist="kornia", modules=("kornia.augmentation",),
        method="kornia RandomElasticTransform", exact=False,
        interpolation="bilinear / nearest (elastic_transform2d offers no bicubic)",
        field=f"{GAUSS}, kernel 63, sigma 32, alpha 1 in normalised coordinates (defaults)",
        border="reflection", calls="one batch",
        note="AugmentationSequential resamples the mask nearest with the same field",
        make=make_kornia,
    ),
    Peer(
        name="monai", dist="monai", modules=("monai.transforms",),
        method="MONAI Rand2DElasticd", exact=False,
        interpolation="bicubic convolution (grid_sample) / nearest",
        field=(
            f"control grid {MONAI_SPACING} px apart (6x6 with the outer ring), offsets "
            f"N(0, {GRID_SIGMA:g}^2) px, upsampled by bicubic convolution"
        ),
        border="reflection", calls="one sample per call",
        note="labels come back float32 (MetaTensor)", make=make_monai,
    ),
    Peer(
        name="torchio", dist="torchio", modules=("torchio", "SimpleITK"),
        method="TorchIO RandomElasticDeformation", exact=False,
        interpolation="cubic B-spline (SimpleITK sitkBSpline) / nearest",
        field=(
            "7x7 B-spline control points 128 px apart, outer 2 rings locked (3x3 move), "
            "uniform +-7.5 px (defaults)"
        ),
        border="constant (the sample's minimum)", calls="one sample per call",
        note="SimpleITK resampling; every output float32, labels included", make=make_torchio,
    ),
    Peer(
        name="albumentations", dist="albumentations", modules=("albumentations", "cv2"),
        method="albumentations ElasticTransform", exact=False,
        interpolation="bicubic convolution (cv2.INTER_CUBIC) / nearest",
        field=f"{GAUSS}, alpha 1, sigma 50 (defaults)", border="mirror (BORDER_REFLECT_101)",
        calls="one sample per call", note="OpenCV remap on NumPy HxW",
        make=make_albumentations,
    ),
    Peer(
        name="batchgeneratorsv2", dist="batchgeneratorsv2",
        modules=("batchgeneratorsv2.transforms.spatial.spatial",),
        method="batchgeneratorsv2 SpatialTransform", exact=False,
        interpolation="bicubic convolution (grid_sample) / nearest",
        field=(
            f"{GAUSS} (FFT), sigma U(0, 0.2) x patch (default), max displacement "
            f"{BGV2_MAGNITUDE:g} px (the default 0.2 px is sub-pixel)"
        ),
        border="reflection", calls="one sample per call",
        note="nnU-Net's spatial transform, elastic part only", make=make_batchgeneratorsv2,
    ),
)
PEER_NAMES = [p.name for p in PEERS]
SKIPPABLE = PEER_NAMES[1:]


def check_importable(peers: Sequence[Peer]) -> None:
    """Every peer not skipped must import: a missing one is an error naming it."""
    missing = []
    for peer in peers:
        try:
            for module in peer.modules:
                importlib.import_module(module)
        except ImportError as err:
            missing.append(f"{peer.name} ({err})")
    if missing:
        names = " ".join(m.split()[0] for m in missing)
        raise SystemExit(
            f"error: peer(s) not importable: {'; '.join(missing)}. Install the peers with "
            f"`make bench` (they live in .venv-bench: run this script with "
            f".venv-bench/bin/python), or leave them out with --skip {names}"
        )


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_output(arrays: Arrays, inputs: Batch) -> dict[str, Any]:
    """Shape as the input's, image finite, labels a subset of the input's (and integral)."""
    images, labels = arrays
    lab = labels.astype(np.float64)
    kept = bool(np.all(lab == np.round(lab))) and bool(
        np.isin(np.unique(lab), np.unique(inputs.labels.numpy())).all()
    )
    return {
        "shape_ok": images.shape == tuple(inputs.image.shape) == labels.shape,
        "image_finite": bool(np.isfinite(images).all()),
        "labels_kept": kept,
        "dtypes": {"image": str(images.dtype), "labels": str(labels.dtype)},
    }


def differs_per_sample(images: np.ndarray) -> bool | None:
    """On the probe (one image in every slot): did every sample get its own field?"""
    if images.shape[0] < 2:
        return None
    return all(not np.array_equal(images[0], images[i]) for i in range(1, images.shape[0]))


def validate(peer: Peer, batch: Batch, probe: Batch, threads: int) -> tuple[Runner, dict, Arrays]:
    """Build the peer's runner, run it once on the batch and once on the probe, check both."""
    run, unpack = peer.make(batch, threads)
    out = unpack(run())
    checks = check_output(out, batch)
    run_p, unpack_p = peer.make(probe, threads)
    out_p = unpack_p(run_p())
    checks_p = check_output(out_p, probe)
    checks["labels_kept_batch"] = checks["labels_kept"]
    checks["labels_kept_probe"] = checks_p["labels_kept"]
    checks["labels_kept"] = checks["labels_kept"] and checks_p["labels_kept"]
    checks["per_sample_fields"] = differs_per_sample(out_p[0])
    return (run, unpack), checks, out


def parity(ours: Arrays, ref: Arrays) -> dict[str, float]:
    return {
        "image_max_abs_diff": float(np.abs(ours[0] - ref[0]).max()),
        "label_fraction_differing": float(np.mean(ours[1] != ref[1])),
    }


def time_round_robin(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Interleaved timing: each round runs every method once, so load hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["method"]: r for r in rows}
    ours = by["unetlib"]["images_per_s"]
    ratios = {m: ours / r["images_per_s"] for m, r in by.items() if m != "unetlib"}
    inexact = [r for r in rows if not r["exact"]]
    fastest = max(inexact, key=lambda r: r["images_per_s"]) if inexact else None
    return {
        "ratios": ratios,
        "fastest_inexact": (
            {"method": fastest["method"], "images_per_s": fastest["images_per_s"]}
            if fastest else None
        ),
        "unetlib_over_fastest_inexact": ours / fastest["images_per_s"] if fastest else None,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch / OpenCV / SimpleITK threads")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--skip", nargs="+", default=[], choices=SKIPPABLE, metavar="PEER",
                    help=f"leave these peers out (recorded): {' '.join(SKIPPABLE)}")
    ap.add_argument("--dry-run", action="store_true",
                    help="batch 2, size 64, repeats 1, warmup 0: checks that everything runs")
    ap.add_argument("--out", default=None, help="write results as JSON here (atomically)")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.batch, args.size, args.repeats, args.warmup = 2, 64, 1, 0
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    peers = [p for p in PEERS if p.name not in args.skip]
    check_importable(peers)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # torchvision, kornia, TorchIO and batchgeneratorsv2 draw from torch
    np.random.seed(0)  # batchgeneratorsv2's scalars
    n, s = args.batch, args.size
    batch = make_batch(n, s)
    probe = make_probe(batch)
    print(f"threads={args.threads} batch={n} size={s}x{s} skip={args.skip}", flush=True)

    runners: dict[str, Runner] = {}
    checks: dict[str, dict] = {}
    outputs: dict[str, Arrays] = {}
    for peer in peers:
        runners[peer.name], checks[peer.name], outputs[peer.name] = validate(
            peer, batch, probe, args.threads
        )
        if not all(checks[peer.name][k] for k in ("shape_ok", "image_finite", "labels_kept")):
            print(f"  CHECK FAILED {peer.name}: {checks[peer.name]}", flush=True)

    times = time_round_robin(
        {name: run for name, (run, _) in runners.items()}, args.repeats, args.warmup
    )
    rows = []
    for peer in peers:
        med = float(np.median(times[peer.name]))
        v = version(peer.dist)
        row = {
            "method": peer.method.format(version=v),
            "peer": peer.name,
            "library": peer.dist,
            "version": v,
            "images_per_s": n / med,
            "median_s_per_batch": med,
            "times_s": times[peer.name],
            "exact": peer.exact,
            "interpolation": peer.interpolation,
            "field": peer.field,
            "border": peer.border,
            "calls": peer.calls,
            "note": peer.note,
            **checks[peer.name],
        }
        if peer.name == "elasticdeform":
            row["parity"] = parity(outputs["unetlib"], outputs["elasticdeform"])
        rows.append(row)
        print(f"{row['method']:36s} {n / med:9.1f} img/s  ({med * 1e3:9.1f} ms/batch)  "
              f"labels_kept={row['labels_kept']} per_sample={row['per_sample_fields']}",
              flush=True)
        if "parity" in row:
            print(f"  parity vs unetlib: {row['parity']}")

    summary = summarize(rows)
    for method, ratio in summary["ratios"].items():
        print(f"  unetlib / {method}: {ratio:.2f}x")
    payload = {
        "command": command_line(),
        "workload": {
            "batch": n,
            "size": [s, s],
            "image": "torch.rand float32, seeded generator (seed 0)",
            "labels": "uint8, random integers 0..254",
            "threads": args.threads,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "dry_run": args.dry_run,
            "unetlib": {"grid": [3, 3], "sigma": GRID_SIGMA, "orders": [3, 0], "mode": "mirror"},
            "fields": "one random field per sample, for every method",
            "timing": "interleaved round-robin, median; input containers built outside timing",
        },
        "hardware": {**hardware("cpu"), "load_average": os.getloadavg()},
        "versions": {
            **{p.dist: version(p.dist) for p in PEERS},
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": version("scipy"),
            "SimpleITK": version("SimpleITK"),
            "opencv-python-headless": version("opencv-python-headless"),
        },
        "skipped": sorted(args.skip),
        "results": rows,
        **summary,
    }
    if args.out:
        write_json_atomic(args.out, payload)
        print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
