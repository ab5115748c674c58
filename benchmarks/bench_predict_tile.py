"""Benchmark: overlap-tile prediction of one 512 x 512 frame by the quick profile's network, for
several input tiles; seconds a frame, tiles a frame, and whether the probabilities agree.

The quick network pads its convolutions ("same"); :func:`unetlib.tiling.predict_tiled` drops the
outer ``margin`` pixels of each tile's output (96 at five levels, wider than the 92 pixels its
receptive field reaches). Every tile that keeps that margin should therefore give the same
probabilities, and the tile should set only the speed: this script measures both, on the
profile's own configuration (five levels, 16 channels, BatchNorm in eval mode, channels-last
weights as trained) with seeded random weights and BatchNorm statistics, on a seeded random
frame at the data's scale (a checkpoint would give the same timing; the equality does not depend
on the weights). ``--checkpoint`` predicts with trained weights instead.

    python benchmarks/bench_predict_tile.py --out benchmarks/results/bench_predict_tile_cpu.json
    python benchmarks/bench_predict_tile.py --tiles 704 --reps 1 --out /tmp/t.json   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unetlib.model import UNet, load_checkpoint  # noqa: E402
from unetlib.profiles import train_config  # noqa: E402
from unetlib.provenance import command_line, hardware, write_json_atomic  # noqa: E402
from unetlib.tiling import _plan, one_pass_tile, padded_extent, predict_tiled  # noqa: E402


def quick_network(seed: int = 0) -> UNet:
    """The quick profile's network with seeded weights and BatchNorm statistics, in eval mode."""
    config = train_config("quick", "02_train")
    torch.manual_seed(seed)
    model = UNet(in_channels=1, num_classes=2, depth=config.depth,
                 base_channels=config.base_channels, padding=config.padding,
                 batch_norm=config.batch_norm, dropout=config.dropout, up_mode=config.up_mode)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 512, 608, 704],
                        help="input tiles to time (default 256 512 608 704)")
    parser.add_argument("--size", type=int, default=512, help="frame side (default 512)")
    parser.add_argument("--reps", type=int, default=5, help="timed predictions a tile")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained network (unetlib checkpoint) instead of seeded weights")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)[0] if args.checkpoint else quick_network()
    model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(1)
    frame = torch.randn(args.size, args.size) * 0.04 + 0.5  # a DIC frame's scale (std 0.04)
    rows, reference = [], None
    for tile in args.tiles:
        stride, margin = _plan(model.depth, model.padding, tile, None)
        n = padded_extent(args.size, tile, stride, margin)[0]
        probs = predict_tiled(model, frame, tile=tile)  # warm-up
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            probs = predict_tiled(model, frame, tile=tile)
            times.append(time.perf_counter() - start)
        reference = probs if reference is None else reference
        rows.append({"tile": tile, "margin": margin, "tiles_a_frame": n * n,
                     "median_s": statistics.median(times), "times_s": times,
                     "max_abs_diff_vs_first": float((probs - reference).abs().max()),
                     "bitwise_equal_to_first": bool(torch.equal(probs, reference))})
        print(f"tile {tile}: {n * n} tile(s) a frame, {rows[-1]['median_s']:.3f} s, "
              f"max |diff| {rows[-1]['max_abs_diff_vs_first']:.2e}", flush=True)
    write_json_atomic(args.out, {
        "benchmark": "overlap-tile prediction of one frame, by input tile (quick network)",
        "command": command_line(), "hardware": hardware("cpu"),
        "workload": {"size": args.size, "depth": model.depth, "padding": model.padding,
                     "weights": "checkpoint" if args.checkpoint else "seeded",
                     "one_pass_tile": one_pass_tile(args.size, model.depth, model.padding),
                     "profile_tile": train_config("quick", "02_train").input_tile,
                     "reps": args.reps},
        "results": rows,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
